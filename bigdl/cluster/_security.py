"""TLS between the client, the scheduler and the workers: what ``security=`` of start_local and connect accept.

Dask encrypts and authenticates its connections with TLS through
:class:`distributed.Security` (mutual TLS: every party presents a certificate
signed by the cluster's CA).  bigdl resolves ``security=`` to one:

* ``True``: new self-signed certificates held in memory
  (``Security.temporary()``, needs the ``cryptography`` package); for
  :func:`bigdl.cluster.start_local`, whose scheduler and workers get them too;
* a directory of PEM files, as a Kubernetes Secret of type
  ``kubernetes.io/tls`` (e.g. issued by cert-manager) mounts them:
  ``ca.crt`` (the CA), ``tls.crt`` (the certificate) and ``tls.key`` (its
  private key).  The deployment in ``cluster/`` mounts such a Secret at
  ``/etc/bigdl/tls`` (:data:`DEFAULT_TLS_DIR`) in the scheduler, worker and
  client pods; :data:`TLS_DIR_ENV` (``BIGDL_TLS_DIR``) names the directory
  for :func:`bigdl.cluster.connect` when ``security`` is not given;
* a ``distributed.Security`` object, used as it is.

The dashboard (HTTP, port 8787) is not covered by these certificates: never
expose it publicly (see the README, "Security (TLS)").
"""

from __future__ import annotations

import os
from pathlib import Path

from bigdl._validation import parameter_error
from bigdl.errors import SchemaError

__all__ = ["resolve_security", "security_from_directory", "DEFAULT_TLS_DIR", "TLS_DIR_ENV", "TLS_FILES"]

DEFAULT_TLS_DIR = "/etc/bigdl/tls"
TLS_DIR_ENV = "BIGDL_TLS_DIR"
# The keys of a kubernetes.io/tls Secret (cert-manager adds ca.crt).
TLS_FILES = {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}


def security_from_directory(directory: str | os.PathLike):
    """A ``distributed.Security`` requiring TLS, from ``ca.crt``, ``tls.crt`` and ``tls.key`` in ``directory``.

    The one certificate serves as client, scheduler and worker certificate,
    as in a cluster whose pods all mount the same Secret.

    Parameters
    ----------
    directory : str or path
        E.g. ``/etc/bigdl/tls``.

    Returns
    -------
    distributed.Security

    Raises
    ------
    SchemaError
        When a file is missing, naming it and how to make the files.
    """
    from distributed import Security

    folder = Path(directory)
    paths = {role: folder / name for role, name in TLS_FILES.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SchemaError(
            f"TLS: {', '.join(missing)} not found. The 'security' directory must hold the cluster's CA "
            f"({TLS_FILES['ca']}), a certificate it signed ({TLS_FILES['cert']}) and that certificate's key "
            f"({TLS_FILES['key']}), in PEM format, as a Kubernetes TLS Secret mounts them (see the README, "
            "'Security (TLS)'); for a cluster on this machine use start_local(security=True)."
        )
    cert, key = str(paths["cert"]), str(paths["key"])
    return Security(require_encryption=True, tls_ca_file=str(paths["ca"]),
                    tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key)


def resolve_security(security, *, owner: str, temporary_allowed: bool = True):
    """The ``distributed.Security`` (or None) that ``security=`` of ``owner`` stands for.

    Parameters
    ----------
    security : None, bool, str, path or distributed.Security
        See the module docstring.
    owner : str
        The function name, for messages.
    temporary_allowed : bool, default True
        Whether ``True`` (fresh self-signed certificates) makes sense: not
        when connecting to a cluster that was started with other ones.

    Returns
    -------
    distributed.Security or None

    Raises
    ------
    ParameterError
        ``security`` of another type.
    SchemaError
        ``True`` where it is not allowed, or without the ``cryptography`` package; unusable TLS files.
    """
    from distributed import Security

    if security is None or security is False:
        return None
    if isinstance(security, Security):
        return security
    if security is True:
        if not temporary_allowed:
            raise SchemaError(
                f"{owner}(security=True) would make new self-signed certificates, which a running cluster "
                "does not trust; pass the directory of the cluster's certificates (e.g. "
                f"security={DEFAULT_TLS_DIR!r}) or a distributed.Security."
            )
        try:
            return Security.temporary()
        except ImportError:
            raise SchemaError(
                f"{owner}(security=True) needs the 'cryptography' package to make self-signed certificates: "
                "pip install cryptography."
            ) from None
    if isinstance(security, (str, os.PathLike)):
        return security_from_directory(security)
    raise parameter_error(owner, "security", security, "None, True, a directory of TLS files or a distributed.Security")
