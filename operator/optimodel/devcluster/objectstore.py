"""The local cluster's object store: Versity's S3 gateway (versitygw) as Service `s3` in namespace
`storage`, port 9000, so that `examples/digits/optimizedmodel.yaml` and its endpoint
`http://s3.storage:9000` work unchanged (pure: manifests only, no I/O).

A real S3 server, not an emulator: versitygw serves a folder of the node over the S3 API with
SigV4 authentication, accounts and bucket policies. Its data lives in the node's /var, which is the
cluster's state directory, so objects outlive `make cluster-down`; its root keys are generated at
the first `up` and kept beside the rest of the cluster's credentials. The Service is also a
NodePort, the one way the host (which has no cluster DNS and no route to Service addresses) puts
objects in.
"""

from __future__ import annotations

from typing import Any, Final

VERSITYGW_VERSION: Final = "v1.8.0"
VERSITYGW_IMAGE: Final = f"localhost/versitygw:{VERSITYGW_VERSION}"
NAMESPACE: Final = "storage"
SERVICE: Final = "s3"
PORT: Final = 9000
NODE_PORT: Final = 30900
ROOT_SECRET: Final = "s3-root"
# The folder of the node that holds the buckets and the accounts; the host creates it for the
# store's user, since a hostPath volume made by the kubelet belongs to root.
DATA_DIR: Final = "/var/lib/optimodel-s3"
DATA_SUBDIRS: Final = ("accounts", "buckets")  # versitygw's --iam-dir and posix root, which must exist
USER_ID: Final = 65532


def manifests(root_access_key: str, root_secret_key: str) -> list[dict[str, Any]]:
    """The namespace, the root keys' Secret, the gateway's Deployment and its Service."""
    labels = {"app.kubernetes.io/name": "versitygw", "app.kubernetes.io/part-of": "optimodel-devcluster"}
    meta = {"namespace": NAMESPACE, "labels": labels}
    root_env = [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": ROOT_SECRET, "key": key}}}
        for env, key in (("ROOT_ACCESS_KEY", "access-key"), ("ROOT_SECRET_KEY", "secret-key"))
    ]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ROOT_SECRET, **meta},
            "stringData": {"access-key": root_access_key, "secret-key": root_secret_key},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SERVICE, **meta},
            "spec": {
                "replicas": 1,
                # One gateway at a time on the node's folder.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": USER_ID,
                            "runAsGroup": USER_ID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "versitygw",
                                "image": VERSITYGW_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "--port", f":{PORT}",
                                    "--iam-dir", f"{DATA_DIR}/{DATA_SUBDIRS[0]}",
                                    "posix", f"{DATA_DIR}/{DATA_SUBDIRS[1]}",
                                ],  # fmt: skip
                                "env": root_env,
                                "ports": [{"name": "s3", "containerPort": PORT}],
                                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 2},
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "512Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
                            }
                        ],
                        "volumes": [{"name": "data", "hostPath": {"path": DATA_DIR, "type": "Directory"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, **meta},
            "spec": {
                "type": "NodePort",
                "selector": labels,
                "ports": [{"name": "s3", "port": PORT, "targetPort": PORT, "nodePort": NODE_PORT}],
            },
        },
    ]
