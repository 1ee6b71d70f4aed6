"""Kubernetes manifests for a bigdl cluster run by the Dask Kubernetes operator.

This module owns what ``bigdl cluster manifest`` prints and what
``cluster/daskcluster.yaml`` holds (a test keeps the two equal): a
``PersistentVolumeClaim`` for the shared store, a ``DaskCluster`` (the
scheduler, its ``ClusterIP`` service on 8786 and 8787, and the CPU worker group
for ingest), a ``DaskWorkerGroup`` of GPU workers for training, a client
pod to run workflows from, and optionally a ``Job`` running the quickstart
against an object store, all on the bigdl image of ``cluster/Dockerfile``.
Object-store credentials reach every container (scheduler, workers, client,
Job) from one optional Secret, never from the manifest itself: the Secret is
created apart (``cluster/store-credentials.yaml`` holds its keys with
placeholders), so applying the manifest never replaces real credentials.
It also writes the pip constraints that image is built with
(:func:`client_constraints`), so the scheduler and workers run the client's
exact versions, and derives the scheduler's address inside the Kubernetes
cluster (:func:`scheduler_address`) for :func:`bigdl.cluster.connect`.

The specs are built here rather than with
``dask_kubernetes.operator.make_cluster_spec`` because that helper starts the
scheduler with the ``dask-scheduler`` entry point, which distributed 2026.6
removed, and has no place for volumes, secrets, TLS or a second worker group;
importing it would also make ``kr8s``, ``kopf`` and the Kubernetes clients
runtime dependencies.  The conventions the operator relies on are kept (the
port names ``tcp-comm`` and ``http-dashboard``, the scheduler service
``<name>-scheduler`` selecting ``dask.org/cluster-name`` and
``dask.org/component``), and the tests compare them with that helper's output.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import sys
from importlib import metadata

import yaml

from bigdl._validation import Interval, Predicate, check_params
from bigdl.cluster._local import WORKER_ENVIRONMENT, WORKER_PROFILE_INTERVAL, allocator_defaults
from bigdl.cluster._security import DEFAULT_TLS_DIR, TLS_DIR_ENV, TLS_FILES

__all__ = ["render_manifest", "manifest_yaml", "scheduler_address", "client_constraints", "default_image",
           "OPERATOR_VERSION", "SCHEDULER_PORT", "DASHBOARD_PORT", "STORE_MOUNT", "STORE_CREDENTIAL_VARIABLES"]

# The dask-kubernetes release whose operator chart and image cluster/values.yaml pins; the test extra
# installs the same wheel, whose CRDs the manifests are validated against.
OPERATOR_VERSION = "2026.3.0"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788  # the port make_worker_spec gives worker dashboards
IMAGE_REPOSITORY = "bigdl"
STORE_MOUNT = "/data"
SCRATCH_MOUNT = "/scratch"
# The uid of the user the Dockerfile creates; pods run as it, never as root.
IMAGE_UID = 1000
#: The keys of the credentials Secret (``cluster/store-credentials.yaml``): the standard variables
#: botocore (under s3fs) reads, so ``s3://`` paths work in every pod without ``storage_options``.
STORE_CREDENTIAL_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
QUICKSTART_WORKDIR = f"{SCRATCH_MOUNT}/quickstart"  # the Job's local files: CSV before upload, the plot
# How often the Job's pod is retried: it starts with the cluster, and connect() gives up after 10 s while
# the scheduler is not yet up; Kubernetes waits 10 s, 20 s, 40 s, 80 s between tries (a rerun overwrites
# only the quickstart's own store).
QUICKSTART_RETRIES = 4
#: Environment of every worker container: the allocator settings ``start_local`` gives its workers
#: (the image sets them too) and the profiler's interval (read by ``dask worker`` as dask config).
WORKER_POD_ENVIRONMENT = {**WORKER_ENVIRONMENT,
                          "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL": WORKER_PROFILE_INTERVAL}
# dask_kubernetes.constants: a DaskCluster name is an RFC 1123 label short enough that
# "<name>-scheduler" (the service) stays within Kubernetes' 63 characters.
MAX_NAME_LENGTH = 63 - len("-scheduler")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# pip, setuptools and wheel are the image's own tools; bigdl is installed from the build context.
_NOT_CONSTRAINED = {"pip", "setuptools", "wheel", "bigdl-dask"}


def default_image(gpu: bool = False) -> str:
    """The image tag built by ``cluster/Dockerfile`` for this bigdl version.

    Parameters
    ----------
    gpu : bool, default False
        The CUDA build of torch (tag suffix ``-cuda``) for GPU workers.

    Returns
    -------
    str
        ``bigdl:<version>`` or ``bigdl:<version>-cuda``; push it to your
        registry and pass the registry's name as ``image=``.
    """
    import bigdl

    return f"{IMAGE_REPOSITORY}:{bigdl.__version__}{'-cuda' if gpu else ''}"


def scheduler_address(name: str = "bigdl", namespace: str | None = None, *, tls: bool = False) -> str:
    """The address of the scheduler of the ``DaskCluster`` ``name``, as pods in the cluster reach it.

    The operator names the scheduler's service ``<name>-scheduler``.

    Parameters
    ----------
    name : str, default "bigdl"
        The ``DaskCluster``'s name (``metadata.name``).
    namespace : str, optional
        Its namespace: the address is then the service's full DNS name, valid
        from any namespace; without it, the short name, valid in the same one.
    tls : bool, default False
        ``tls://`` for a cluster rendered with ``tls_secret``.

    Returns
    -------
    str
        E.g. ``tcp://bigdl-scheduler.data.svc.cluster.local:8786``, for
        ``DASK_SCHEDULER_ADDRESS`` or :func:`bigdl.cluster.connect`.
    """
    _check_name(name, "name", "scheduler_address")
    host = f"{name}-scheduler"
    if namespace is not None:
        _check_name(namespace, "namespace", "scheduler_address")
        host += f".{namespace}.svc.cluster.local"
    return f"{'tls' if tls else 'tcp'}://{host}:{SCHEDULER_PORT}"


def render_manifest(name: str = "bigdl", *, workers: int = 2, gpu_workers: int = 0, image: str | None = None,
                    gpu_image: str | None = None, memory_limit: str | int = "4GiB", cpu: int = 1,
                    gpu_memory_limit: str | int = "16GiB", gpu_cpu: int = 4, gpus_per_worker: int = 1,
                    scheduler_memory: str | int = "2GiB", store_claim: str | None = None,
                    store_size: str = "100Gi", storage_class: str | None = None,
                    credentials_secret: str | None = None, tls_secret: str | None = None,
                    namespace: str | None = None, gpu_node_selector: dict | None = None,
                    gpu_tolerations: list | None = None, client: bool = True, shared_volume: bool = True,
                    quickstart_store: str | None = None) -> list[dict]:
    """The Kubernetes resources of a bigdl cluster on the Dask Kubernetes operator.

    Parameters
    ----------
    name : str, default "bigdl"
        The ``DaskCluster``'s name; the scheduler service is ``<name>-scheduler``.
    workers : int, default 2
        CPU workers (the ``DaskCluster``'s default worker group: ingest, estimators).
    gpu_workers : int, default 0
        GPU workers (the ``DaskWorkerGroup`` ``<name>-gpu``); each has
        ``gpus_per_worker`` ``nvidia.com/gpu`` and the Dask resource ``GPU``, so
        ``with dask.annotate(resources={"GPU": 1}): trainer.fit(ds)`` trains there.
        0 keeps the group, to scale later (``kubectl scale daskworkergroup <name>-gpu --replicas 1``).
    image, gpu_image : str, optional
        The images built by ``cluster/Dockerfile`` (default :func:`default_image`).
    memory_limit : str or int, default "4GiB"
        Memory of each CPU worker: both the container's limit (and request)
        and ``dask worker --memory-limit``, so Dask spills, pauses and restarts
        the worker before the kernel kills the container.
    cpu : int, default 1
        Cores requested per CPU worker, and its Dask threads.
    gpu_memory_limit : str or int, default "16GiB"
        The same for each GPU worker.
    gpu_cpu : int, default 4
        Cores requested per GPU worker (data loading); it runs one task at a time.
    gpus_per_worker : int, default 1
        ``nvidia.com/gpu`` per GPU worker.
    scheduler_memory : str or int, default "2GiB"
        The scheduler's memory limit.
    store_claim : str, optional
        The ``ReadWriteMany`` volume claim mounted at ``/data`` in the workers
        and the client (default ``<name>-store``): stores and inputs must be at
        the same path everywhere.
    store_size : str, default "100Gi"
        Its requested size.
    storage_class : str, optional
        Its storage class (one that supports ``ReadWriteMany``: NFS, CephFS,
        EFS, Filestore, Azure Files); default: the cluster's default class.
    credentials_secret : str, optional
        A Secret whose keys become environment variables of every container:
        the scheduler, the workers, the client and the quickstart Job
        (:data:`STORE_CREDENTIAL_VARIABLES`: ``AWS_ENDPOINT_URL``,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, for
        ``s3://`` inputs, stores and checkpoints).  Optional, so the pods start
        without it; the manifest only names it, create it apart
        (``cluster/store-credentials.yaml``).  Default ``<name>-store-credentials``.
    tls_secret : str, optional
        A Secret holding ``ca.crt``, ``tls.crt`` and ``tls.key``: mounted at
        ``/etc/bigdl/tls`` everywhere, and every Dask connection requires TLS.
    namespace : str, optional
        Sets ``metadata.namespace`` and uses full service DNS names; default:
        the namespace ``kubectl apply`` uses.
    gpu_node_selector : dict, optional
        ``nodeSelector`` of the GPU workers, e.g. ``{"nvidia.com/gpu.present": "true"}``.
    gpu_tolerations : list of dict, optional
        ``tolerations`` of the GPU workers, e.g. for GPU nodes tainted ``nvidia.com/gpu``.
    client : bool, default True
        Also a pod ``<name>-client`` (same image, volumes and secrets) to run
        workflows from with ``kubectl exec``.
    shared_volume : bool, default True
        The ``ReadWriteMany`` claim mounted at ``/data``.  False leaves it out
        (and its mounts) for clusters whose inputs, stores and checkpoints
        are all on object storage: without an RWX storage class the claim
        never binds and no pod that mounts it starts.
    quickstart_store : str, optional
        Also a ``Job`` ``<name>-quickstart`` that runs
        ``workflows/quickstart.py --store quickstart_store`` once (the client
        pod's image, environment and secrets), e.g.
        ``"s3://my-bucket/bigdl/flights.zarr"``; its CSV inputs and checkpoints go
        beside the store.  An object-store URL, or with the shared volume a
        path under ``/data``; never a URL with credentials in it.

    Returns
    -------
    list of dict
        The resources, in the order to apply them; :func:`manifest_yaml` writes them.

    Raises
    ------
    ParameterError
        A name that is not a Kubernetes name, a count out of range, a memory size below 256MiB, a
        ``store_size`` that is not a Kubernetes quantity, or a ``quickstart_store`` that no pod could
        reach or that carries credentials.

    Examples
    --------
    >>> resources = render_manifest(workers=3, gpu_workers=1)
    >>> [resource["kind"] for resource in resources]
    ['PersistentVolumeClaim', 'DaskCluster', 'DaskWorkerGroup', 'Pod']
    >>> resources = render_manifest(shared_volume=False, quickstart_store="s3://my-bucket/bigdl/flights.zarr")
    >>> [resource["kind"] for resource in resources]
    ['DaskCluster', 'DaskWorkerGroup', 'Pod', 'Job']
    """
    owner = "render_manifest"
    _check_name(name, "name", owner)
    if namespace is not None:
        _check_name(namespace, "namespace", owner)
    check_params(owner, {"workers": workers, "gpu_workers": gpu_workers, "cpu": cpu, "gpu_cpu": gpu_cpu,
                         "gpus_per_worker": gpus_per_worker, "store_size": store_size, "client": client,
                         "shared_volume": shared_volume}, PARAMETERS)
    # NumPy ints pass the check; the manifest's YAML takes Python ints only.
    workers, gpu_workers, cpu, gpu_cpu = int(workers), int(gpu_workers), int(cpu), int(gpu_cpu)
    gpus_per_worker = int(gpus_per_worker)
    memory = {parameter: _memory_bytes(value, parameter, owner) for parameter, value in
              (("memory_limit", memory_limit), ("gpu_memory_limit", gpu_memory_limit),
               ("scheduler_memory", scheduler_memory))}
    store_claim = store_claim or f"{name}-store"
    credentials_secret = credentials_secret or f"{name}-store-credentials"
    for parameter, value in (("store_claim", store_claim), ("credentials_secret", credentials_secret),
                             ("tls_secret", tls_secret), ("storage_class", storage_class)):
        if value is not None:
            _check_name(value, parameter, owner, subdomain=True)  # Secrets, claims, classes: DNS subdomains
    quickstart_on_volume = (quickstart_store is not None
                            and _check_quickstart_store(quickstart_store, shared_volume, credentials_secret, owner))
    layout = _Layout(name=name, namespace=namespace, store_claim=store_claim if shared_volume else None,
                     credentials_secret=credentials_secret, tls_secret=tls_secret)
    image = image or default_image()
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": layout.metadata(store_claim),
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": store_size}}}}
    if storage_class is not None:
        claim["spec"]["storageClassName"] = storage_class
    cluster = {
        "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "metadata": layout.metadata(name),
        "spec": {
            "scheduler": {"spec": layout.pod([layout.scheduler(image, memory["scheduler_memory"])], scratch=False),
                          "service": layout.service()},
            "worker": {"replicas": workers,
                       "spec": layout.pod([layout.worker(image, memory["memory_limit"], cores=cpu, threads=cpu)])},
        },
    }
    gpu_pod = layout.pod([layout.worker(gpu_image or default_image(gpu=True), memory["gpu_memory_limit"],
                                        cores=gpu_cpu, threads=1, gpus=gpus_per_worker)])
    if gpu_node_selector:
        gpu_pod["nodeSelector"] = dict(gpu_node_selector)
    if gpu_tolerations:
        gpu_pod["tolerations"] = [dict(toleration) for toleration in gpu_tolerations]
    gpu_group = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskWorkerGroup",
                 "metadata": layout.metadata(f"{name}-gpu"),
                 "spec": {"cluster": name, "worker": {"replicas": gpu_workers, "spec": gpu_pod}}}
    resources = [claim, cluster, gpu_group] if shared_volume else [cluster, gpu_group]
    if client:
        resources.append({"apiVersion": "v1", "kind": "Pod", "metadata": layout.metadata(f"{name}-client"),
                          "spec": layout.pod([layout.client(image, memory["memory_limit"], cores=cpu)],
                                             scratch=False)})
    if quickstart_store is not None:
        resources.append(layout.quickstart_job(image, memory["memory_limit"], cores=cpu, store=quickstart_store,
                                               mount_store=quickstart_on_volume))
    return resources


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What every resource of one rendered cluster shares: names, volumes, secrets, TLS."""

    name: str
    namespace: str | None
    store_claim: str | None  # None: no shared volume (object storage only)
    credentials_secret: str
    tls_secret: str | None

    @property
    def tls(self) -> bool:
        return self.tls_secret is not None

    @property
    def address(self) -> str:
        return scheduler_address(self.name, self.namespace, tls=self.tls)

    def metadata(self, resource_name: str) -> dict:
        result = {"name": resource_name, "labels": {"app.kubernetes.io/name": "bigdl",
                                                    "app.kubernetes.io/instance": self.name}}
        if self.namespace is not None:
            result["namespace"] = self.namespace
        return result

    def tls_args(self) -> list[str]:
        if not self.tls:
            return []
        return ["--protocol", "tls", "--tls-ca-file", f"{DEFAULT_TLS_DIR}/{TLS_FILES['ca']}",
                "--tls-cert", f"{DEFAULT_TLS_DIR}/{TLS_FILES['cert']}",
                "--tls-key", f"{DEFAULT_TLS_DIR}/{TLS_FILES['key']}"]

    def container(self, role: str, image: str, args: list[str], memory_bytes: int, cores: int, *,
                  env: list[dict], gpus: int = 0, store: bool = True, scratch: bool = False) -> dict:
        """One container: requests = limits for memory (no overcommit), no CPU limit (no throttling).

        Every container gets the credentials Secret, the scheduler's too: whatever runs anywhere in
        the cluster (tasks, ``run_on_scheduler``, plugins) sees the same object-store environment.
        """
        resources = {"requests": {"cpu": str(cores), "memory": _quantity(memory_bytes)},
                     "limits": {"memory": _quantity(memory_bytes)}}
        if gpus:
            # Extended resources are requested through limits (the request defaults to the limit).
            resources["limits"]["nvidia.com/gpu"] = str(gpus)
        spec = {"name": role, "image": image, "imagePullPolicy": "IfNotPresent", "args": args}
        if env:
            spec["env"] = env
        # envFrom, not one secretKeyRef per variable: a Secret that adds AWS_SESSION_TOKEN (or another
        # provider's variables) reaches the pods too. Optional: pods on a shared volume need no Secret.
        spec["envFrom"] = [{"secretRef": {"name": self.credentials_secret, "optional": True}}]
        spec["resources"] = resources
        spec["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        mounts = []
        if store and self.store_claim is not None:
            mounts.append({"name": "store", "mountPath": STORE_MOUNT})
        if scratch:
            mounts.append({"name": "scratch", "mountPath": SCRATCH_MOUNT})
        if self.tls:
            mounts.append({"name": "tls", "mountPath": DEFAULT_TLS_DIR, "readOnly": True})
        if mounts:
            spec["volumeMounts"] = mounts
        return spec

    def pod(self, containers: list[dict], *, scratch: bool = True) -> dict:
        """A pod spec running as the image's unprivileged user, with the volumes its containers mount."""
        volumes = []
        if any(mount["name"] == "store" for container in containers for mount in container.get("volumeMounts", [])):
            volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": self.store_claim}})
        if scratch:
            volumes.append({"name": "scratch", "emptyDir": {}})
        if self.tls:
            # 0440 with fsGroup: readable by the image's user only.
            volumes.append({"name": "tls", "secret": {"secretName": self.tls_secret, "defaultMode": 0o440}})
        spec = {"securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                                    "fsGroup": IMAGE_UID},
                "containers": containers}
        if volumes:
            spec["volumes"] = volumes
        return spec

    def scheduler(self, image: str, memory_bytes: int) -> dict:
        """``dask scheduler`` with the ports, port names and health probes the operator expects."""
        args = ["dask", "scheduler", "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT),
                "--dashboard-address", f":{DASHBOARD_PORT}", *self.tls_args()]
        spec = self.container("scheduler", image, args, memory_bytes, 1, env=[], store=False)
        spec["ports"] = [{"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
                         {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"}]
        probe = {"port": "http-dashboard", "path": "/health"}
        spec["readinessProbe"] = {"httpGet": dict(probe), "initialDelaySeconds": 0, "periodSeconds": 1,
                                  "timeoutSeconds": 300}
        spec["livenessProbe"] = {"httpGet": dict(probe), "initialDelaySeconds": 15, "periodSeconds": 20}
        return spec

    def service(self) -> dict:
        """The scheduler's service (the operator names it ``<name>-scheduler``)."""
        # Never LoadBalancer/NodePort: the dashboard has no authentication (README, "Security").
        return {"type": "ClusterIP",
                "selector": {"dask.org/cluster-name": self.name, "dask.org/component": "scheduler"},
                "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
                          {"name": "http-dashboard", "protocol": "TCP", "port": DASHBOARD_PORT,
                           "targetPort": "http-dashboard"}]}

    def worker(self, image: str, memory_bytes: int, *, cores: int, threads: int, gpus: int = 0) -> dict:
        """``dask worker`` whose ``--memory-limit`` is its container's memory limit."""
        args = ["dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", str(threads),
                "--memory-limit", _dask_bytes(memory_bytes), "--local-directory", SCRATCH_MOUNT,
                "--dashboard-address", f":{WORKER_DASHBOARD_PORT}"]
        if gpus:
            args += ["--resources", f"GPU={gpus}"]
        # The operator injects DASK_SCHEDULER_ADDRESS=tcp://... into workers unless the container sets it,
        # which a TLS cluster must (controller.build_worker_deployment_spec).
        # As start_local chooses: workers with less than ROOMY_THREAD_MEMORY a thread keep less heap.
        allocator = allocator_defaults(memory_bytes / max(threads, 1))
        env = [{"name": name, "value": value} for name, value in {**WORKER_POD_ENVIRONMENT, **allocator}.items()]
        if self.tls:
            env.append({"name": "DASK_SCHEDULER_ADDRESS", "value": self.address})
        spec = self.container("worker", image, args + self.tls_args(), memory_bytes, cores, env=env, gpus=gpus,
                              scratch=True)
        spec["ports"] = [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}]
        return spec

    def client_env(self) -> list[dict]:
        """What a client needs to reach the scheduler: its address (and the certificates' directory)."""
        env = [{"name": "DASK_SCHEDULER_ADDRESS", "value": self.address}]
        if self.tls:
            env.append({"name": TLS_DIR_ENV, "value": DEFAULT_TLS_DIR})
        return env

    def client(self, image: str, memory_bytes: int, *, cores: int) -> dict:
        """A shell to ``kubectl exec`` into, with the scheduler's address (and certificates) set."""
        # A shell that exits on SIGTERM, so deleting the pod takes no grace period.
        spec = self.container("client", image, ["sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"],
                              memory_bytes, cores, env=self.client_env())
        spec["workingDir"] = "/opt/bigdl"
        return spec

    def quickstart_job(self, image: str, memory_bytes: int, *, cores: int, store: str, mount_store: bool) -> dict:
        """A Job running ``workflows/quickstart.py --store STORE`` once, as the client pod would.

        It mounts the shared volume only for a store on it, so the Job of an object-store URL runs on
        a cluster rendered with or without the volume.
        """
        # The workers read the generated CSV files: beside a store on the shared volume, or uploaded beside
        # an object-store one by the quickstart itself (then the pod's scratch disk only stages them).
        workdir = posixpath.dirname(store.rstrip("/")) if mount_store else QUICKSTART_WORKDIR
        args = ["python", "workflows/quickstart.py", "--store", store, "--workdir", workdir]
        container = self.container("quickstart", image, args, memory_bytes, cores, env=self.client_env(),
                                   store=mount_store, scratch=True)
        container["workingDir"] = "/opt/bigdl"
        pod = self.pod([container])
        pod["restartPolicy"] = "Never"  # a failed try is a new pod: its log stays readable
        name = f"{self.name}-quickstart"
        template_metadata = {"labels": self.metadata(name)["labels"]}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.metadata(name),
                "spec": {"backoffLimit": QUICKSTART_RETRIES, "template": {"metadata": template_metadata,
                                                                         "spec": pod}}}


def manifest_yaml(resources: list[dict]) -> str:
    """The resources as one multi-document YAML text for ``kubectl apply -f -``.

    Parameters
    ----------
    resources : list of dict
        From :func:`render_manifest`.

    Returns
    -------
    str
    """
    import bigdl

    header = (f"# bigdl {bigdl.__version__} on the Dask Kubernetes operator {OPERATOR_VERSION}; "
              "rendered by `bigdl cluster manifest` (see cluster/daskcluster.yaml for every key explained).\n")
    return header + yaml.dump_all(resources, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no ``&id001`` anchors where two places hold equal objects."""

    def ignore_aliases(self, data):
        return True


def client_constraints() -> str:
    """pip constraints pinning every package of this environment, for the image the cluster runs.

    ``cluster/Dockerfile`` installs bigdl with ``--constraint`` this file, so
    the scheduler and workers get exactly the client's dask, distributed,
    cloudpickle, numpy, pandas, zarr, pyarrow, ... (distributed compares them
    when a client connects, the Python version included).  torch keeps its
    version without the local label (``2.13.0``, not ``2.13.0+cpu``), so the
    CUDA build satisfies it too.

    Returns
    -------
    str
        One ``name==version`` line per installed distribution, sorted, after a
        header naming the Python version (the Dockerfile's ``PYTHON_VERSION``).
    """
    pins = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in _NOT_CONSTRAINED:
            continue
        pins[key] = distribution.version.split("+", 1)[0]
    python = ".".join(str(part) for part in sys.version_info[:3])
    lines = [f"# python=={python}",
             "# The client's packages: `bigdl cluster constraints > cluster/constraints.txt` before `docker build`."]
    lines += [f"{key}=={pins[key]}" for key in sorted(pins)]
    return "\n".join(lines) + "\n"


def _check_name(value, parameter: str, owner: str, subdomain: bool = False) -> None:
    """Kubernetes object names: RFC 1123 labels (subdomains where dots are allowed)."""
    limit = 253 if subdomain else (MAX_NAME_LENGTH if parameter == "name" else 63)

    def valid(name) -> bool:
        parts = name.split(".") if subdomain else [name]
        return isinstance(name, str) and len(name) <= limit and all(_NAME.match(part) for part in parts)

    described = (f"a Kubernetes name: lowercase letters, digits and '-', starting and ending with a letter or "
                 f"digit, at most {limit} characters")
    check_params(owner, {parameter: value}, {parameter: [Predicate(valid, described)]})


def _check_quickstart_store(store, shared_volume: bool, credentials_secret: str, owner: str) -> bool:
    """An object-store URL without credentials in it (False), or with the shared volume a path under /data (True)."""
    scheme = _URL_SCHEME.match(store) if isinstance(store, str) else None
    protocol = scheme.group(1) if scheme else None
    # s3://KEY:SECRET@bucket/... would put the secret in the Job's spec, readable by anyone who can get Jobs.
    check_params(owner, {"quickstart_store": store}, {"quickstart_store": [Predicate(
        lambda url: not re.match(r"^[a-z][a-z0-9+.-]*://[^/]*@", url),
        f"a URL without credentials (they would be readable in the Job's spec; put them in the Secret "
        f"{credentials_secret!r})")]})
    if protocol is not None and protocol not in {"file", "local"}:
        return False
    where = f"a path under {STORE_MOUNT}/ (the shared volume)" if shared_volume else \
        "reachable from every pod without a shared volume"
    check_params(owner, {"quickstart_store": store}, {"quickstart_store": [Predicate(
        lambda path: shared_volume and protocol is None and path.startswith(f"{STORE_MOUNT}/")
        and ".." not in path.split("/"),
        f"an object-store URL such as 's3://my-bucket/bigdl/flights.zarr' or, with the shared volume, a path "
        f"under {STORE_MOUNT}/ (the store must be {where})")]})
    return True


def _parse_bytes(value) -> int:
    from dask.utils import parse_bytes

    return parse_bytes(value)


_MEMORY = Predicate(lambda value: not isinstance(value, bool) and _parse_bytes(value) >= 2**28,
                    "a memory size of at least 256MiB such as '4GiB' or a number of bytes")
PARAMETERS = {
    "workers": [Interval(int, 0, None)], "gpu_workers": [Interval(int, 0, None)], "cpu": [Interval(int, 1, None)],
    "gpu_cpu": [Interval(int, 1, None)], "gpus_per_worker": [Interval(int, 1, None)],
    "store_size": [Predicate(lambda size: isinstance(size, str) and bool(_QUANTITY.match(size)),
                             "a Kubernetes quantity such as '100Gi' or '500G'")],
    "client": [Predicate(lambda value: isinstance(value, bool), "a bool")],
    "shared_volume": [Predicate(lambda value: isinstance(value, bool), "a bool")],
}


def _memory_bytes(value, parameter: str, owner: str) -> int:
    check_params(owner, {parameter: value}, {parameter: [_MEMORY]})
    return int(_parse_bytes(value))


_BINARY_UNITS = ((2**40, "Ti", "TiB"), (2**30, "Gi", "GiB"), (2**20, "Mi", "MiB"), (2**10, "Ki", "KiB"))


def _quantity(n_bytes: int) -> str:
    """Bytes as a Kubernetes quantity (``4Gi``), exact."""
    for size, suffix, _ in _BINARY_UNITS:
        if n_bytes % size == 0:
            return f"{n_bytes // size}{suffix}"
    return str(n_bytes)


def _dask_bytes(n_bytes: int) -> str:
    """The same bytes as Dask writes sizes (``4GiB``), exact."""
    for size, _, suffix in _BINARY_UNITS:
        if n_bytes % size == 0:
            return f"{n_bytes // size}{suffix}"
    return str(n_bytes)
