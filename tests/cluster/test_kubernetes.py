"""The Kubernetes deployment in ``cluster/``, checked without a Kubernetes cluster.

What a cluster would check, done statically: every manifest validates against
the Kubernetes API schemas (``kubernetes-validate``, strict: unknown fields are
errors) and the ``DaskCluster``/``DaskWorkerGroup`` CRD schemas of the
operator release pinned in ``cluster/values.yaml`` (shipped in the
``dask-kubernetes`` wheel); the container args parse with the real
``dask scheduler``/``dask worker`` commands; and the numbers that must agree do
(ports, memory limits, image tags, Python/torch/bigdl versions) between
``cluster/values.yaml``, ``cluster/daskcluster.yaml``, ``cluster/Dockerfile``,
``cluster/constraints.txt`` and what ``bigdl cluster manifest`` renders.  The
object-storage path: the credentials Secret (``cluster/store-credentials.yaml``,
placeholders only) reaches every container as its environment, as the kubelet
would resolve it, no credential is inlined anywhere else, and the quickstart
Job (``cluster/quickstart-job.yaml``) runs ``workflows/quickstart.py --store s3://...``.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

# dask-kubernetes, kubernetes-validate (with jsonschema) and helm-python-sdk are test extras.
import dask_kubernetes
import helm_python
import jsonschema
import numpy as np
import kubernetes_validate
import pytest
import yaml

import bigdl
from bigdl.cli import main
from bigdl.cluster import _kubernetes as k8s
from bigdl.cluster._security import DEFAULT_TLS_DIR, TLS_DIR_ENV, TLS_FILES
from bigdl.errors import ClusterConnectionError, SchemaError

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
CHART_DIR = (Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
             / "dask-kubernetes-operator")
# The oldest Kubernetes minor still supported by the big providers' extended support, and the newest bundled.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]

RENDERINGS = {
    "defaults": {},
    "tls": {"tls_secret": "bigdl-tls"},
    "gpu": {"workers": 3, "gpu_workers": 1, "gpus_per_worker": 2, "memory_limit": "6GiB", "cpu": 2,
            "gpu_memory_limit": "30GiB", "storage_class": "nfs-client", "gpu_node_selector":
                {"nvidia.com/gpu.present": "true"},
            "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    "namespaced": {"name": "flights", "namespace": "data", "tls_secret": "flights-tls", "client": False,
                   "image": "registry.example.com/ml/bigdl:0.1.0", "memory_limit": 3 * 2**30 + 2**29,
                   "quickstart_store": "/data/quickstart/flights.zarr", "credentials_secret": "flights-s3"},
    # Object storage only: no shared volume, the quickstart Job against a bucket.
    "object-storage": {"shared_volume": False, "quickstart_store": "s3://my-bucket/bigdl/flights.zarr",
                       "tls_secret": "bigdl-tls", "namespace": "data", "gpu_workers": 1},
}
QUICKSTART_STORE = "s3://my-bucket/bigdl/flights.zarr"  # the bucket cluster/quickstart-job.yaml names


# ---------------------------------------------------------------- helpers
def parse_quantity(text: str) -> int:
    """A Kubernetes memory quantity in bytes (binary and decimal suffixes)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    assert match, text
    return int(match.group(1)) * units.get(match.group(2), 1)


def enable_tls(text: str) -> str:
    """cluster/daskcluster.yaml with TLS switched on as its header says: uncomment '#tls ', drop '# without TLS'."""
    lines = [line for line in text.splitlines() if not line.rstrip().endswith("# without TLS")]
    return "\n".join(re.sub(r"^(\s*)#tls ", r"\1", line) for line in lines) + "\n"


def load_all(text: str) -> list[dict]:
    return [document for document in yaml.safe_load_all(text) if document is not None]


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str):
    """A JSON-schema validator of the operator's CRD ``kind``, strict like ``kubectl apply --validate=strict``.

    Kubernetes prunes (or, strictly, rejects) fields a structural schema does
    not declare; JSON Schema accepts them unless ``additionalProperties`` is
    false, so it is added wherever the schema lists properties and does not
    preserve unknown fields.
    """
    crd = yaml.safe_load((CHART_DIR / "crds" / f"{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def strict(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema["properties"]["spec"])
    return f"{crd['spec']['group']}/{version['name']}", jsonschema.Draft7Validator(schema)


def validate_kubernetes(resource: dict, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


def pods_of(resources: list[dict]) -> dict[str, dict]:
    """``{role: pod spec}`` for the scheduler, the CPU and GPU worker groups, the client and the quickstart Job."""
    by_kind = {resource["kind"]: resource for resource in resources}
    pods = {"scheduler": by_kind["DaskCluster"]["spec"]["scheduler"]["spec"],
            "cpu-worker": by_kind["DaskCluster"]["spec"]["worker"]["spec"],
            "gpu-worker": by_kind["DaskWorkerGroup"]["spec"]["worker"]["spec"]}
    if "Pod" in by_kind:
        pods["client"] = by_kind["Pod"]["spec"]
    if "Job" in by_kind:
        pods["quickstart"] = by_kind["Job"]["spec"]["template"]["spec"]
    return pods


def container_environment(container: dict, secrets: dict[str, dict]) -> dict:
    """The environment the kubelet gives ``container``, from ``{secret name: data}`` (Kubernetes' rules).

    ``envFrom`` first (each source in order; a missing Secret is an error
    unless optional), then ``env``, whose entries win; ``secretKeyRef``
    resolves one key (missing: an error unless optional).
    """
    environment = {}
    for source in container.get("envFrom", []):
        (kind,) = source  # this project uses secretRef only; a configMapRef would need its data here
        assert kind == "secretRef", source
        name = source["secretRef"]["name"]
        if name not in secrets:
            assert source["secretRef"].get("optional") is True, f"the pod would not start without Secret {name}"
            continue
        environment.update(secrets[name])
    for item in container.get("env", []):
        if "value" in item:
            environment[item["name"]] = item["value"]
            continue
        reference = item["valueFrom"]["secretKeyRef"]
        data = secrets.get(reference["name"], {})
        if reference["key"] not in data:
            assert reference.get("optional") is True, f"the pod would not start without {reference}"
            continue
        environment[item["name"]] = data[reference["key"]]
    return environment


def credentials_secret() -> dict:
    (secret,) = load_all((CLUSTER_DIR / "store-credentials.yaml").read_text())
    return secret


def quickstart_module():
    """workflows/quickstart.py as a module (it keeps its cluster under ``if __name__ == "__main__"``)."""
    path = CLUSTER_DIR.parent / "workflows" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("bigdl_quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def env_of(container: dict) -> dict:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def dockerfile_args() -> dict:
    text = (CLUSTER_DIR / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def constraint_pins(text: str) -> dict:
    return dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", text, flags=re.MULTILINE))


# ---------------------------------------------------------------- the manifests validate
@pytest.fixture(params=sorted(RENDERINGS), scope="module")
def rendering(request):
    options = RENDERINGS[request.param]
    return options, k8s.render_manifest(**options)


def test_custom_resources_validate_against_the_operator_crds(rendering):
    _, resources = rendering
    custom = [resource for resource in resources if resource["apiVersion"].startswith("kubernetes.dask.org/")]
    assert sorted(resource["kind"] for resource in custom) == ["DaskCluster", "DaskWorkerGroup"]
    for resource in custom:
        api_version, validator = crd_validator(resource["kind"])
        assert resource["apiVersion"] == api_version
        errors = [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(resource)]
        assert errors == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_resources_and_embedded_pod_specs_validate_against_kubernetes(rendering, version):
    _, resources = rendering
    for resource in resources:
        if not resource["apiVersion"].startswith("kubernetes.dask.org/"):
            validate_kubernetes(resource, version)
    # The operator turns the embedded specs into Deployments' pods and a Service: validate them as such.
    for role, spec in pods_of(resources).items():
        validate_kubernetes({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}, "spec": spec}, version)
    cluster = next(resource for resource in resources if resource["kind"] == "DaskCluster")
    validate_kubernetes({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scheduler"},
                         "spec": cluster["spec"]["scheduler"]["service"]}, version)


def test_strict_validation_rejects_unknown_and_mistyped_fields():
    resources = k8s.render_manifest()
    cluster = next(resource for resource in resources if resource["kind"] == "DaskCluster")
    _, validator = crd_validator("DaskCluster")
    typo = copy.deepcopy(cluster)
    typo["spec"]["worker"]["replica"] = typo["spec"]["worker"].pop("replicas")
    assert any("'replica' was unexpected" in error.message for error in validator.iter_errors(typo))
    wrong_type = copy.deepcopy(cluster)
    wrong_type["spec"]["worker"]["replicas"] = "two"
    assert any("is not of type 'integer'" in error.message for error in validator.iter_errors(wrong_type))
    bad_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
               "spec": copy.deepcopy(cluster["spec"]["worker"]["spec"])}
    bad_pod["spec"]["containers"][0]["memoryLimit"] = "4GiB"
    with pytest.raises(kubernetes_validate.ValidationError, match="memoryLimit"):
        validate_kubernetes(bad_pod, KUBERNETES_VERSIONS[-1])


def test_container_args_parse_with_the_dask_cli(rendering, tmp_path):
    from distributed.cli import dask_scheduler, dask_worker

    _, resources = rendering
    # click checks that the TLS files exist: stand in for the mounted Secret.
    for filename in TLS_FILES.values():
        (tmp_path / filename).write_text("")
    for role, spec in pods_of(resources).items():
        (container,) = spec["containers"]
        args = container["args"]
        if role in ("client", "quickstart"):
            continue
        assert args[:2] == ["dask", "scheduler" if role == "scheduler" else "worker"]
        command = dask_scheduler.main if role == "scheduler" else dask_worker.main
        # make_context parses and type-checks every option without starting anything; an option the
        # current CLI lacks (or a removed entry point's spelling) fails here.
        local_args = [arg.replace(DEFAULT_TLS_DIR, str(tmp_path)) for arg in args[2:]]
        context = command.make_context(f"dask {args[1]}", local_args)
        if role != "scheduler":
            assert context.params["memory_limit"] == option(args, "--memory-limit")


# ---------------------------------------------------------------- values agree
def test_memory_threads_and_gpus_agree_between_dask_and_kubernetes(rendering):
    from dask.utils import parse_bytes

    options, resources = rendering
    pods = pods_of(resources)
    expected_memory = {"cpu-worker": parse_bytes(options.get("memory_limit", "4GiB")),
                       "gpu-worker": parse_bytes(options.get("gpu_memory_limit", "16GiB"))}
    for role in ("cpu-worker", "gpu-worker"):
        (container,) = pods[role]["containers"]
        args, limits, requests = container["args"], container["resources"]["limits"], container["resources"]["requests"]
        assert parse_bytes(option(args, "--memory-limit")) == parse_quantity(limits["memory"]) \
            == parse_quantity(requests["memory"]) == expected_memory[role]
        threads = int(option(args, "--nthreads"))
        assert threads == (int(requests["cpu"]) if role == "cpu-worker" else 1)
        assert option(args, "--local-directory") in {mount["mountPath"] for mount in container["volumeMounts"]}
    (gpu,) = pods["gpu-worker"]["containers"]
    gpus = options.get("gpus_per_worker", 1)
    assert option(gpu["args"], "--resources") == f"GPU={gpus}"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    (cpu,) = pods["cpu-worker"]["containers"]
    assert "--resources" not in cpu["args"] and "nvidia.com/gpu" not in cpu["resources"]["limits"]
    if "gpu_node_selector" in options:
        assert pods["gpu-worker"]["nodeSelector"] == options["gpu_node_selector"]
        assert pods["gpu-worker"]["tolerations"] == options["gpu_tolerations"]
    by_kind = {resource["kind"]: resource for resource in resources}
    assert by_kind["DaskCluster"]["spec"]["worker"]["replicas"] == options.get("workers", 2)
    assert by_kind["DaskWorkerGroup"]["spec"]["worker"]["replicas"] == options.get("gpu_workers", 0)
    assert by_kind["DaskWorkerGroup"]["spec"]["cluster"] == by_kind["DaskCluster"]["metadata"]["name"]


def test_ports_service_and_scheduler_address_agree(rendering):
    options, resources = rendering
    name, namespace = options.get("name", "bigdl"), options.get("namespace")
    cluster = next(resource for resource in resources if resource["kind"] == "DaskCluster")
    service = cluster["spec"]["scheduler"]["service"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert service["type"] == "ClusterIP"  # the dashboard is never exposed outside the cluster
    container_ports = {port["name"]: port["containerPort"] for port in scheduler["ports"]}
    service_ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["ports"]}
    assert container_ports == {"tcp-comm": k8s.SCHEDULER_PORT, "http-dashboard": k8s.DASHBOARD_PORT}
    assert service_ports == {"tcp-comm": (8786, "tcp-comm"), "http-dashboard": (8787, "http-dashboard")}
    assert option(scheduler["args"], "--port") == str(container_ports["tcp-comm"])
    assert option(scheduler["args"], "--dashboard-address") == f":{container_ports['http-dashboard']}"
    assert service["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    # The operator names the service "<name>-scheduler": the address the client pod (and TLS workers) use.
    tls = "tls_secret" in options
    address = k8s.scheduler_address(name, namespace, tls=tls)
    assert address.startswith(f"{'tls' if tls else 'tcp'}://{name}-scheduler") and address.endswith(":8786")
    pods = pods_of(resources)
    for role in ("client", "quickstart"):
        if role in pods:
            assert env_of(pods[role]["containers"][0])["DASK_SCHEDULER_ADDRESS"] == address
    for role in ("cpu-worker", "gpu-worker"):
        worker_env = env_of(pods[role]["containers"][0])
        # Without TLS the operator injects tcp://<name>-scheduler.<namespace>...:8786 itself.
        assert worker_env == dict(k8s.WORKER_POD_ENVIRONMENT, **({"DASK_SCHEDULER_ADDRESS": address} if tls else {}))
    if namespace:
        assert all(resource["metadata"]["namespace"] == namespace for resource in resources)


def test_tls_mounts_the_secret_where_bigdl_cluster_reads_it(rendering):
    options, resources = rendering
    pods = pods_of(resources)
    secret = options.get("tls_secret")
    for role, spec in pods.items():
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
        if secret is None:
            assert "tls" not in volumes and "--protocol" not in container["args"]
            continue
        assert volumes["tls"]["secret"]["secretName"] == secret
        assert mounts["tls"] == {"name": "tls", "mountPath": DEFAULT_TLS_DIR, "readOnly": True}
        if role in ("client", "quickstart"):
            assert env_of(container)[TLS_DIR_ENV] == DEFAULT_TLS_DIR
            continue
        args = container["args"]
        assert option(args, "--protocol") == "tls"
        assert option(args, "--tls-ca-file") == f"{DEFAULT_TLS_DIR}/{TLS_FILES['ca']}"
        assert option(args, "--tls-cert") == f"{DEFAULT_TLS_DIR}/{TLS_FILES['cert']}"
        assert option(args, "--tls-key") == f"{DEFAULT_TLS_DIR}/{TLS_FILES['key']}"


def test_the_store_volume_reaches_every_worker_and_the_client(rendering):
    options, resources = rendering
    name = options.get("name", "bigdl")
    claims = [resource for resource in resources if resource["kind"] == "PersistentVolumeClaim"]
    shared = options.get("shared_volume", True)
    quickstart_on_volume = options.get("quickstart_store", "").startswith(f"{k8s.STORE_MOUNT}/")
    if shared:
        (claim,) = claims
        assert claim["metadata"]["name"] == f"{name}-store"
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"].get("storageClassName") == options.get("storage_class")
    else:
        assert claims == []  # an unbound claim would keep every pod that mounts it Pending
    for role, spec in pods_of(resources).items():
        (container,) = spec["containers"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == k8s.IMAGE_UID
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
        # Every mount has its volume and every volume a mount.
        assert set(volumes) == set(mounts)
        wants_store = shared and role != "scheduler" and (role != "quickstart" or quickstart_on_volume)
        assert ("store" in mounts) == wants_store, role
        if role == "quickstart":
            # The generated CSV files go to the workdir: on the volume the workers mount when the store is.
            workdir = option(container["args"], "--workdir")
            assert workdir.startswith(f"{k8s.STORE_MOUNT}/" if quickstart_on_volume else f"{k8s.SCRATCH_MOUNT}/")
            if not quickstart_on_volume:
                assert mounts["scratch"]["mountPath"] == k8s.SCRATCH_MOUNT
        if wants_store:
            assert volumes["store"]["persistentVolumeClaim"]["claimName"] == f"{name}-store"
            assert mounts["store"] == {"name": "store", "mountPath": k8s.STORE_MOUNT}


def test_every_credential_variable_reaches_every_container(rendering):
    """As the kubelet resolves it: with the Secret, each variable in every container; without it, pods still start."""
    options, resources = rendering
    secret_name = options.get("credentials_secret", f"{options.get('name', 'bigdl')}-store-credentials")
    values = {key: f"value-of-{key}" for key in k8s.STORE_CREDENTIAL_VARIABLES}
    containers = {f"{role}/{container['name']}": container for role, spec in pods_of(resources).items()
                  for container in spec["containers"] + spec.get("initContainers", [])}
    expected_roles = {"scheduler", "cpu-worker", "gpu-worker"} | ({"client"} if options.get("client", True) else set())
    expected_roles |= {"quickstart"} if "quickstart_store" in options else set()
    assert {name.split("/")[0] for name in containers} == expected_roles
    for name, container in containers.items():
        environment = container_environment(container, {secret_name: values})
        assert {key: environment.get(key) for key in values} == values, name
        # Optional: a cluster on the shared volume (or with a cloud identity) starts without the Secret.
        assert not set(values) & set(container_environment(container, {})), name
        # The resolution can fail: the same container without its Secret reference lacks the variables.
        bare = {key: value for key, value in container.items() if key != "envFrom"}
        assert not set(values) & set(container_environment(bare, {secret_name: values})), name


def test_no_credential_is_inlined_outside_the_secret(rendering):
    options, resources = rendering
    secret = credentials_secret()
    assert all(resource["kind"] != "Secret" for resource in resources)  # the manifest only names the Secret
    text = k8s.manifest_yaml(resources)
    for role, spec in pods_of(resources).items():
        for container in spec["containers"]:
            for item in container.get("env", []):
                assert not item["name"].startswith("AWS_"), (role, item)  # from the Secret only
    for value in secret["stringData"].values():
        assert value not in text
    for filename in ("daskcluster.yaml", "quickstart-job.yaml"):
        assert not any(value in (CLUSTER_DIR / filename).read_text() for value in secret["stringData"].values())
    assert not re.search(r"://[^/\s]*@", text)  # no user:password@ in any URL


def test_store_credentials_yaml_is_the_secret_every_pod_names():
    secret = credentials_secret()
    validate_kubernetes(secret, KUBERNETES_VERSIONS[-1])
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    names = {container["envFrom"][0]["secretRef"]["name"]
             for spec in pods_of(k8s.render_manifest(quickstart_store=QUICKSTART_STORE)).values()
             for container in spec["containers"]}
    assert names == {secret["metadata"]["name"]}
    assert tuple(secret["stringData"]) == k8s.STORE_CREDENTIAL_VARIABLES
    # Placeholders only: a real key never goes into git.
    assert all("REPLACE-WITH-" in value for value in secret["stringData"].values()), secret["stringData"]
    assert "data" not in secret


def test_quickstart_job_yaml_is_the_rendering_and_its_args_parse_with_the_quickstart():
    job = k8s.render_manifest(quickstart_store=QUICKSTART_STORE)[-1]
    assert load_all((CLUSTER_DIR / "quickstart-job.yaml").read_text()) == [job]
    # The same Job without the shared volume: it mounts none either way.
    assert k8s.render_manifest(quickstart_store=QUICKSTART_STORE, shared_volume=False)[-1] == job
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["python", "workflows/quickstart.py"]
    quickstart = quickstart_module()
    args = quickstart.parse_args(container["args"][2:])
    assert args.store == QUICKSTART_STORE
    assert args.workdir.startswith(k8s.SCRATCH_MOUNT + "/")
    # The workers read the inputs and write the store and checkpoints: all beside the store, in the bucket.
    assert quickstart.locations(args) == {"store": QUICKSTART_STORE, "inputs": "s3://my-bucket/bigdl/csv",
                                          "checkpoints": "s3://my-bucket/bigdl/checkpoints"}
    local = quickstart.parse_args(["--workdir", "/tmp/q"])
    assert quickstart.locations(local) == {"store": Path("/tmp/q/flights.zarr"), "inputs": None,
                                           "checkpoints": "/tmp/q/checkpoints"}


def test_the_quickstart_uploads_its_inputs_once_and_never_replaces_anothers(tmp_path):
    """Through fsspec, as for s3:// (the in-memory file system stands for the bucket)."""
    import fsspec

    quickstart = quickstart_module()
    files = bigdl.datasets.write_tabular_csv(tmp_path / "csv", 300, n_files=2, seed=0)
    remote = "memory://bigdl-quickstart-test/csv"
    memory = fsspec.filesystem("memory")
    try:
        urls = quickstart.upload_inputs(files, remote)
        assert urls == [f"{remote}/{path.name}" for path in files]
        for path, url in zip(files, urls):
            assert memory.cat_file(url) == path.read_bytes()
        modified = {url: memory.info(url).get("created") for url in urls}
        assert quickstart.upload_inputs(files, remote) == urls  # a rerun keeps the uploaded files
        assert {url: memory.info(url).get("created") for url in urls} == modified
        memory.pipe_file(urls[0], b"someone else's file")
        with pytest.raises(SystemExit, match=re.escape(f"{urls[0]} exists and is not this quickstart's input")):
            quickstart.upload_inputs(files, remote)
        assert memory.cat_file(urls[0]) == b"someone else's file"
    finally:
        memory.rm("/bigdl-quickstart-test", recursive=True)


@pytest.mark.parametrize(("options", "message"), [
    ({"quickstart_store": "s3://AKIAEXAMPLE:wJalrEXAMPLE@my-bucket/flights.zarr"},
     "must be a URL without credentials (they would be readable in the Job's spec; put them in the Secret "
     "'bigdl-store-credentials')"),
    ({"quickstart_store": "work/flights.zarr"}, "must be an object-store URL such as "
                                                "'s3://my-bucket/bigdl/flights.zarr' or, with the shared volume, "
                                                "a path under /data/"),
    ({"quickstart_store": "/data/flights.zarr", "shared_volume": False},
     "(the store must be reachable from every pod without a shared volume). Got '/data/flights.zarr' instead."),
    ({"quickstart_store": "/data/../etc/flights.zarr"}, "a path under /data/ (the shared volume)"),
    ({"shared_volume": "no"}, "The 'shared_volume' parameter of render_manifest must be a bool. Got 'no' instead."),
])
def test_quickstart_store_errors_name_the_parameter(options, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        k8s.render_manifest(**options)


def test_images_are_pinned_to_the_bigdl_version(rendering):
    options, resources = rendering
    version = bigdl.__version__
    for role, spec in pods_of(resources).items():
        (container,) = spec["containers"]
        image = container["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag not in {"", "latest"}
        expected = options.get("image", f"bigdl:{version}") if role != "gpu-worker" else f"bigdl:{version}-cuda"
        assert image == expected
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_conventions_match_the_operators_own_cluster_spec():
    """The port names, service selector, probes and worker dashboard port the operator's helper uses."""
    from dask_kubernetes.operator import make_cluster_spec

    theirs = make_cluster_spec("bigdl", image="bigdl:0.1.0", n_workers=2, worker_command="dask worker")
    ours = next(resource for resource in k8s.render_manifest() if resource["kind"] == "DaskCluster")
    assert (ours["apiVersion"], ours["kind"]) == (theirs["apiVersion"], theirs["kind"])
    assert ours["spec"]["scheduler"]["service"] == theirs["spec"]["scheduler"]["service"]
    (their_scheduler,) = theirs["spec"]["scheduler"]["spec"]["containers"]
    (our_scheduler,) = ours["spec"]["scheduler"]["spec"]["containers"]
    for key in ("name", "ports", "readinessProbe", "livenessProbe"):
        assert our_scheduler[key] == their_scheduler[key]
    # Theirs still starts the removed entry point; ours must not.
    assert their_scheduler["args"][0] == "dask-scheduler" and our_scheduler["args"][:2] == ["dask", "scheduler"]
    (their_worker,) = theirs["spec"]["worker"]["spec"]["containers"]
    (our_worker,) = ours["spec"]["worker"]["spec"]["containers"]
    assert our_worker["ports"] == their_worker["ports"] and our_worker["name"] == their_worker["name"]
    assert option(our_worker["args"], "--name") == option(their_worker["args"], "--name") == "$(DASK_WORKER_NAME)"


# ---------------------------------------------------------------- the files in cluster/
def test_daskcluster_yaml_is_the_default_rendering():
    assert load_all((CLUSTER_DIR / "daskcluster.yaml").read_text()) == k8s.render_manifest()


def test_daskcluster_yaml_with_its_tls_lines_enabled_is_the_tls_rendering():
    text = enable_tls((CLUSTER_DIR / "daskcluster.yaml").read_text())
    assert load_all(text) == k8s.render_manifest(tls_secret="bigdl-tls")


@pytest.mark.parametrize("filename", ["values.yaml", "daskcluster.yaml", "store-credentials.yaml",
                                      "quickstart-job.yaml"])
def test_every_key_is_commented(filename):
    text = (CLUSTER_DIR / filename).read_text()
    if filename == "daskcluster.yaml":
        text += enable_tls(text)  # the TLS lines are keys too once enabled
    uncommented = []
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        is_key = re.match(r"^(- )?[^\s#:'][^#:']*:(\s|$)", stripped) is not None
        if is_key and " # " not in line and not previous.startswith("#"):
            uncommented.append(f"{number}: {line}")
        previous = stripped
    assert uncommented == []


def test_values_yaml_keys_exist_in_the_pinned_operator_chart():
    ours = yaml.safe_load((CLUSTER_DIR / "values.yaml").read_text())
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def check(mine, theirs, path):
        for key, value in mine.items():
            where = ".".join([*path, key])
            assert key in theirs, f"{where} is not a key of the chart's values.yaml"
            default = theirs[key]
            if default is None or value is None:
                continue
            if isinstance(default, dict) and default and isinstance(value, dict):
                check(value, default, [*path, key])  # an empty default dict is free-form (a pod field)
            else:
                assert type(value) is type(default) or isinstance(default, dict) and isinstance(value, dict), where

    check(ours, chart, [])
    # The operator image is pinned to the release whose CRDs the manifests are validated against.
    assert ours["image"]["name"] == chart["image"]["name"]
    assert ours["image"]["tag"] == k8s.OPERATOR_VERSION == metadata.version("dask-kubernetes")
    assert ours["rbac"]["cluster"] is True and "--all-namespaces" in ours["kopfArgs"]
    assert f"--version {k8s.OPERATOR_VERSION}" in (CLUSTER_DIR / "values.yaml").read_text()


def test_the_operator_chart_renders_with_our_values_into_valid_resources():
    """``helm template`` of the pinned chart with cluster/values.yaml, offline (helm-python-sdk binds Helm's Go SDK)."""
    values = yaml.safe_load((CLUSTER_DIR / "values.yaml").read_text())
    rendered = helm_python.Chart.load(str(CHART_DIR)).render(values=values, name="dask-operator", namespace="dask-operator")
    resources = [document for name, text in sorted(rendered.items()) if name.endswith(".yaml")
                 for document in load_all(text)]
    kinds = sorted(resource["kind"] for resource in resources)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    for resource in resources:
        for version in KUBERNETES_VERSIONS:
            validate_kubernetes(resource, version)
    deployment = next(resource for resource in resources if resource["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (operator,) = pod["containers"]
    assert operator["image"] == f"ghcr.io/dask/dask-kubernetes-operator:{k8s.OPERATOR_VERSION}"
    assert operator["args"][1:] == values["kopfArgs"]
    assert operator["securityContext"] == values["securityContext"] and operator["resources"] == values["resources"]
    assert pod["securityContext"] == values["podSecurityContext"]
    # The chart's rules cover the resources cluster/daskcluster.yaml asks the operator to manage.
    (role,) = [resource for resource in resources if resource["kind"] == "ClusterRole"]
    managed = {resource for rule in role["rules"] if "kubernetes.dask.org" in rule["apiGroups"]
               for resource in rule["resources"]}
    assert {"daskclusters", "daskworkergroups"} <= managed


def test_dockerfile_pins_agree_with_constraints_manifest_and_bigdl():
    args = dockerfile_args()
    text = (CLUSTER_DIR / "Dockerfile").read_text()
    constraints = (CLUSTER_DIR / "constraints.txt").read_text()
    pins = constraint_pins(constraints)
    python = re.search(r"^# python==(\S+)$", constraints, flags=re.MULTILINE).group(1)
    assert args["PYTHON_VERSION"] == python
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim-bookworm$", text, flags=re.MULTILINE)
    assert args["TORCH_VERSION"] == pins["torch"] == "2.13.0"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["BIGDL_VERSION"] == bigdl.__version__
    assert f"-t REGISTRY/bigdl:{bigdl.__version__} " in text and f"-t REGISTRY/bigdl:{bigdl.__version__}-cuda" in text
    # Everything distributed compares between client and cluster is pinned, plus the store's readers.
    for package in ("dask", "distributed", "cloudpickle", "msgpack", "tornado", "toolz", "numpy", "pandas",
                    "zarr", "numcodecs", "pyarrow", "scikit-learn", "dask-ml"):
        assert package in pins, package
    # bigdl.explain and the Trainer's trackers run on the workers too: pinned at the client's versions.
    from importlib import metadata

    for package in ("shap", "lime", "captum", "xgboost-cpu", "tensorboard", "mlflow-skinny"):
        assert pins.get(package) == metadata.version(package).split("+", 1)[0], package
    assert "bigdl-dask" not in pins and "pip" not in pins
    # The uid the image runs as is the one the manifests require.
    assert f"useradd --uid {k8s.IMAGE_UID} " in text and f"USER {k8s.IMAGE_UID}:{k8s.IMAGE_UID}" in text
    # The default manifest runs this image.
    images = {c["image"] for spec in pods_of(k8s.render_manifest()).values() for c in spec["containers"]}
    assert images == {f"bigdl:{args['BIGDL_VERSION']}", f"bigdl:{args['BIGDL_VERSION']}-cuda"}


def test_workers_with_little_memory_a_thread_get_the_small_worker_allocator():
    """As start_local: below ROOMY_THREAD_MEMORY a thread (here 2 GiB over 4 threads) the pods keep less heap."""
    pods = pods_of(k8s.render_manifest(memory_limit="2GiB", cpu=4))
    worker_env = env_of(pods["cpu-worker"]["containers"][0])
    small = bigdl.cluster.SMALL_WORKER_ENVIRONMENT
    assert {key: worker_env[key] for key in small} == small
    assert worker_env["DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL"] == "100ms"


def test_workers_get_the_allocator_settings_start_local_gives(rendering, monkeypatch):
    """The worker containers and the image carry bigdl.cluster.WORKER_ENVIRONMENT, and `dask worker` keeps it.

    distributed's nanny builds its worker's pre-spawn environment from its
    configuration (``MALLOC_TRIM_THRESHOLD_=65536``), overridden by the
    process environment: the pod's values are the ones its worker starts with.
    """
    from distributed.nanny import _get_env_variables

    _, resources = rendering
    pods = pods_of(resources)
    for role in ("cpu-worker", "gpu-worker"):
        worker_env = env_of(pods[role]["containers"][0])
        assert {key: worker_env[key] for key in bigdl.cluster.WORKER_ENVIRONMENT} == bigdl.cluster.WORKER_ENVIRONMENT
        assert worker_env["DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL"] == "100ms"
    text = (CLUSTER_DIR / "Dockerfile").read_text()
    (block,) = re.findall(r"^ENV (MALLOC_.*?)(?:\n\n|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    image_env = dict(re.findall(r"(MALLOC_\w+)=(\S+)", block))
    assert image_env == bigdl.cluster.WORKER_ENVIRONMENT
    for key, value in image_env.items():
        monkeypatch.setenv(key, value)
    spawned = _get_env_variables("distributed.nanny.pre-spawn-environ")
    assert spawned["MALLOC_TRIM_THRESHOLD_"] == image_env["MALLOC_TRIM_THRESHOLD_"] != "65536"


def test_dockerfile_copies_only_what_its_dockerignore_lets_in():
    root = CLUSTER_DIR.parent
    text = (CLUSTER_DIR / "Dockerfile").read_text()
    allowed = [line[1:].rstrip("/") for line in (CLUSTER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")]
    sources = [source for line in re.findall(r"^COPY (.+)$", text, flags=re.MULTILINE)
               for source in line.split()[:-1]]
    assert sources
    for source in sources:
        assert (root / source).exists(), source
        assert source.rstrip("/") in allowed, source
    assert "*" in (CLUSTER_DIR / "Dockerfile.dockerignore").read_text().splitlines()  # .venv, work/ stay out


def test_client_constraints_pin_this_environment():
    text = k8s.client_constraints()
    pins = constraint_pins(text)
    assert text.splitlines()[0] == "# python==" + ".".join(map(str, sys.version_info[:3]))
    for package in ("dask", "distributed", "zarr", "pyarrow", "numpy", "cloudpickle"):
        assert pins[package] == metadata.version(package)
    assert pins["torch"] == metadata.version("torch").split("+")[0]
    assert "+" not in "".join(pins.values()) or all("+" not in v for k, v in pins.items() if k == "torch")
    assert "bigdl-dask" not in pins and "pip" not in pins


# ---------------------------------------------------------------- the command and the address
def test_cli_manifest_renders_validating_yaml(capsys):
    assert main(["cluster", "manifest", "--workers", "3", "--gpu-workers", "1"]) == 0
    resources = load_all(capsys.readouterr().out)
    assert resources == k8s.render_manifest(workers=3, gpu_workers=1)
    for resource in resources:
        if resource["apiVersion"].startswith("kubernetes.dask.org/"):
            _, validator = crd_validator(resource["kind"])
            assert list(validator.iter_errors(resource)) == []
        else:
            validate_kubernetes(resource, KUBERNETES_VERSIONS[-1])


def test_cli_manifest_options_reach_the_rendering(capsys):
    assert main(["cluster", "manifest", "--name", "flights", "--namespace", "data", "--tls-secret", "tls",
                 "--memory-limit", "8GiB", "--cpu", "2", "--gpu-node-selector", "pool=gpu", "--no-client",
                 "--image", "r.example.com/bigdl:0.1.0"]) == 0
    resources = load_all(capsys.readouterr().out)
    assert resources == k8s.render_manifest("flights", namespace="data", tls_secret="tls", memory_limit="8GiB",
                                            cpu=2, gpu_node_selector={"pool": "gpu"}, client=False,
                                            image="r.example.com/bigdl:0.1.0")
    assert main(["cluster", "manifest", "--no-shared-volume", "--quickstart-store", QUICKSTART_STORE]) == 0
    resources = load_all(capsys.readouterr().out)
    assert resources == k8s.render_manifest(shared_volume=False, quickstart_store=QUICKSTART_STORE)
    assert [resource["kind"] for resource in resources] == ["DaskCluster", "DaskWorkerGroup", "Pod", "Job"]


def test_cli_constraints_prints_client_constraints(capsys):
    assert main(["cluster", "constraints"]) == 0
    assert capsys.readouterr().out == k8s.client_constraints()


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "-1"], "--workers must be an int in the range [0, inf). Got -1 instead."),
    (["--memory-limit", "lots"], "--memory-limit must be a memory size of at least 256MiB such as '4GiB'"),
    (["--gpu-memory-limit", "100MiB"], "--gpu-memory-limit must be a memory size of at least 256MiB"),
    (["--name", "Bigdl_Cluster"], "--name must be a Kubernetes name: lowercase letters, digits and '-'"),
    (["--tls-secret", "TLS"], "--tls-secret must be a Kubernetes name"),
    (["--store-size", "100GB"], "--store-size must be a Kubernetes quantity such as '100Gi'"),
    (["--gpu-node-selector", "gpu"], "--gpu-node-selector takes KEY=VALUE"),
    (["--quickstart-store", "flights.zarr"], "--quickstart-store must be an object-store URL such as 's3://"),
])
def test_cli_manifest_errors_are_one_line(argv, message, capsys):
    assert main(["cluster", "manifest", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and captured.err.startswith("bigdl cluster: error:")


@pytest.mark.parametrize("name", ["bigdl", "a", "flights-2026", "x" * 53, "x" * 54, "Bigdl", "-bigdl", "bigdl-",
                                  "big_dl", "big.dl", ""])
def test_cluster_names_follow_the_operators_rule(name):
    from dask_kubernetes.exceptions import ValidationError
    from dask_kubernetes.operator.validation import validate_cluster_name

    try:
        validate_cluster_name(name)
        operator_accepts = True
    except ValidationError:
        operator_accepts = False
    try:
        k8s.render_manifest(name)
        ours_accepts = True
    except SchemaError:
        ours_accepts = False
    assert ours_accepts == operator_accepts


def test_render_manifest_errors_name_the_parameter():
    with pytest.raises(SchemaError, match=re.escape("The 'gpu_workers' parameter of render_manifest must be an int "
                                                    "in the range [0, inf). Got True instead.")):
        k8s.render_manifest(gpu_workers=True)
    with pytest.raises(SchemaError, match="The 'store_size' parameter of render_manifest must be a Kubernetes "
                                          "quantity such as '100Gi' or '500G'. Got '100 GB' instead."):
        k8s.render_manifest(store_size="100 GB")
    assert "replicas: 3" in k8s.manifest_yaml(k8s.render_manifest(workers=np.int64(3)))
    with pytest.raises(SchemaError, match="The 'scheduler_memory' parameter of render_manifest must be a memory"):
        k8s.render_manifest(scheduler_memory="2 apples")


def test_scheduler_address_is_the_operators_service_name():
    assert k8s.scheduler_address() == "tcp://bigdl-scheduler:8786"
    assert k8s.scheduler_address("flights", "data") == "tcp://flights-scheduler.data.svc.cluster.local:8786"
    assert k8s.scheduler_address("flights", "data", tls=True) == "tls://flights-scheduler.data.svc.cluster.local:8786"
    # The address the operator injects into its workers (controller.build_worker_deployment_spec).
    from dask_kubernetes.operator.controller.controller import build_worker_deployment_spec

    deployment = build_worker_deployment_spec("flights-default", "data", "flights", "abc", {"containers": [{}]},
                                              {}, {})
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["DASK_SCHEDULER_ADDRESS"] == k8s.scheduler_address("flights", "data")
    with pytest.raises(SchemaError, match="'namespace' parameter of scheduler_address"):
        k8s.scheduler_address("bigdl", "Data")


def test_connect_uses_the_client_pods_address(monkeypatch):
    """In the client pod, connect() takes DASK_SCHEDULER_ADDRESS from the manifest; here the name cannot resolve."""
    client_pod = next(resource for resource in k8s.render_manifest() if resource["kind"] == "Pod")
    address = env_of(client_pod["spec"]["containers"][0])["DASK_SCHEDULER_ADDRESS"]
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    monkeypatch.delenv(TLS_DIR_ENV, raising=False)
    with pytest.raises(ClusterConnectionError, match=re.escape(f"Could not reach the Dask scheduler at {address!r}")):
        bigdl.cluster.connect(timeout="1s", quiet=True)


def test_a_trainer_under_a_gpu_annotation_runs_on_a_gpu_resource_worker(tmp_path):
    """The README's way onto the GPU worker group: its workers have the Dask resource GPU (``--resources GPU=1``)."""
    import dask
    from distributed import Client, LocalCluster, Worker
    from distributed.diagnostics.plugin import SchedulerPlugin

    from bigdl.models import MLP
    from bigdl.train import Trainer

    class Placements(SchedulerPlugin):
        """Records each training task's resource restrictions and worker as the scheduler assigns it."""

        def __init__(self, scheduler):
            self.scheduler, self.seen = scheduler, []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing" and str(key).startswith("bigdl-train"):
                task = self.scheduler.tasks[key]
                self.seen.append((dict(task.resource_restrictions or {}), task.processing_on.address))

    frame = bigdl.datasets.make_tabular(600, n_numeric=3, n_classes=2, seed=1, with_category=False)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "data.parquet", target="target", store=tmp_path / "s.zarr", drop=["id"],
                              rows_per_chunk=200, progress=False)
    # One plain worker (a CPU worker) and one with the GPU resource, as the two worker groups start them.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        cluster.worker_spec["gpu"] = {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1},
                                                            "dashboard": False}}
        cluster.sync(cluster._correct_state)
        placements = Placements(cluster.scheduler)
        cluster.scheduler.add_plugin(placements)
        with Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            (gpu_worker,) = [address for address, info in workers.items() if info["resources"] == {"GPU": 1}]
            trainer = Trainer(MLP(ds.n_features, [8], ds.n_classes), epochs=1, batch_size=64, progress=False)
            with client.as_current(), dask.annotate(resources={"GPU": 1}):
                history = trainer.fit(ds)
    assert placements.seen == [({"GPU": 1}, gpu_worker)]
    assert history[0]["worker"] == gpu_worker


def test_the_manifests_commands_start_a_tls_cluster_that_connect_reaches(tmp_path, monkeypatch):
    """The scheduler and GPU worker containers' exact args and env, run as processes, as the pods run them.

    Only what Kubernetes provides is stood in for: the Secret's files (a
    temporary CA and certificate), the worker name the operator sets, the
    service address (a scheduler file, since the ports here must be free
    ones) and the mount paths.  The client then connects as the client pod
    does: ``bigdl.cluster.connect()`` with the pod's ``DASK_SCHEDULER_ADDRESS``
    and ``BIGDL_TLS_DIR``, over TLS.
    """
    import json
    import os
    import signal
    import subprocess
    import time

    from dask.utils import parse_bytes
    from distributed import Security

    security = Security.temporary()
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    for role, text in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                       ("key", security.tls_client_key)):
        (tls_dir / TLS_FILES[role]).write_text(text)
    pods = pods_of(k8s.render_manifest(tls_secret="bigdl-tls"))
    scheduler_file = tmp_path / "scheduler.json"

    def local(args: list[str]) -> list[str]:
        replaced = {"0.0.0.0": "127.0.0.1", str(k8s.SCHEDULER_PORT): "0", f":{k8s.DASHBOARD_PORT}": ":0",
                    f":{k8s.WORKER_DASHBOARD_PORT}": ":0", k8s.SCRATCH_MOUNT: str(tmp_path / "scratch"),
                    "$(DASK_WORKER_NAME)": "bigdl-gpu-worker-0"}
        args = [replaced.get(arg, arg.replace(DEFAULT_TLS_DIR, str(tls_dir))) for arg in args]
        assert args[0] == "dask"
        return [sys.executable, "-m", "dask", *args[1:]]

    environment = {key: value for key, value in os.environ.items() if key not in ("DASK_SCHEDULER_ADDRESS",
                                                                                   TLS_DIR_ENV)}
    processes, logs = [], []

    def log(name: str):
        logs.append(open(tmp_path / f"{name}.log", "w"))
        return logs[-1]

    try:
        (scheduler,) = pods["scheduler"]["containers"]
        processes.append(subprocess.Popen(local(scheduler["args"]) + ["--scheduler-file", str(scheduler_file)],
                                          env=environment, cwd=tmp_path, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=log("scheduler")))
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline and processes[0].poll() is None, \
                (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        (worker,) = pods["gpu-worker"]["containers"]
        # The pod's env, with the service's address standing for the real one.
        worker_env = {**environment, **env_of(worker), "DASK_SCHEDULER_ADDRESS": address}
        processes.append(subprocess.Popen(local(worker["args"]), env=worker_env, cwd=tmp_path,
                                          start_new_session=True, stdout=subprocess.DEVNULL, stderr=log("worker")))

        (client_container,) = pods["client"]["containers"]
        client_env = env_of(client_container)
        assert set(client_env) == {"DASK_SCHEDULER_ADDRESS", TLS_DIR_ENV}
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        monkeypatch.setenv(TLS_DIR_ENV, str(tls_dir))
        client = bigdl.cluster.connect(timeout="60s", quiet=True)
        try:
            client.wait_for_workers(1, timeout=120)
            (info,) = client.scheduler_info(n_workers=-1)["workers"].values()
            assert info["name"] == "bigdl-gpu-worker-0" and info["resources"] == {"GPU": 1}
            assert info["nthreads"] == 1
            assert info["memory_limit"] == parse_bytes(worker["resources"]["limits"]["memory"].replace("i", "iB"))
            assert client.submit(sum, [1, 2, 3], resources={"GPU": 1}).result(timeout=60) == 6
        finally:
            client.close()
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for handle in logs:
            handle.close()


# ---------------------------------------------------------------- the test extras install together
def test_the_kubernetes_extras_and_the_object_store_packages_agree():
    """``pip check`` for the packages of issue 16's dependency conflict (python-dateutil 2.x vs >= 3).

    botocore (under s3fs and moto) requires ``python-dateutil<3.0.0``; kubernetes 37.0.2 requires
    ``>=3.0.0``. pyproject.toml pins the kubernetes release that accepts 2.x; this checks that every
    requirement of these packages, those installed, holds in this environment.
    """
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = {canonicalize_name(distribution.metadata["Name"]): distribution
                 for distribution in metadata.distributions() if distribution.metadata["Name"]}
    involved = ["dask-kubernetes", "kubernetes", "kubernetes-asyncio", "kubernetes-validate", "kr8s", "kopf",
                "botocore", "boto3", "aiobotocore", "s3fs", "moto"]
    unmet = []
    for name in involved:
        distribution = installed.get(canonicalize_name(name))
        if distribution is None:
            continue
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = installed.get(canonicalize_name(requirement.name))
            if dependency is None or not requirement.specifier.contains(dependency.version, prereleases=True):
                unmet.append(f"{name} {distribution.version} requires {requirement}, "
                             f"has {dependency.version if dependency else 'nothing'}")
    assert unmet == []
    pyproject = tomllib.loads((CLUSTER_DIR.parent / "pyproject.toml").read_text())
    pins = [Requirement(text) for text in pyproject["project"]["optional-dependencies"]["test"]]
    (kubernetes_pin,) = [pin for pin in pins if pin.name == "kubernetes"]
    assert kubernetes_pin.specifier.contains(metadata.version("kubernetes"))
    # The pinned release accepts the dateutil botocore needs.
    dateutil = [Requirement(text) for text in metadata.requires("kubernetes") if text.startswith("python-dateutil")]
    assert dateutil and all(requirement.specifier.contains("2.9.0.post0") for requirement in dateutil)
