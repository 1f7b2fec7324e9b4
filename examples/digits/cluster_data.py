"""Puts the digits example's model and data into the local cluster's object store and gives the
namespace `ml` the two Secrets `optimizedmodel.yaml` names: what `make example-data` runs.

The store is versitygw, Service `s3` in namespace `storage` (see docs/devcluster.md). Each Secret
holds the keys of an account of its own, with only the rights its users need, granted by bucket
policies the way an S3 administrator would:

  s3-credentials       (the operator and the Job)  read models/ and datasets/, read-write artifacts/
  s3-read-credentials  (the serving pods)          read artifacts/, nothing else

Run again, it uploads what changed and keeps the accounts' keys (read back from the Secrets), so
pods already running keep working. The host reaches the store through the Service's NodePort on the
node's address; pods use http://s3.storage:9000.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from optimodel.devcluster import objectstore

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ml"
# (Secret, store account)
WRITER = ("s3-credentials", "ml-writer")
READER = ("s3-read-credentials", "ml-reader")
UPLOADS = {  # local file under --demo-dir -> (bucket, key), as optimizedmodel.yaml names them
    "models/digits-wide.h5": ("models", "digits/1/digits-wide.h5"),
    "data/calibration.npz": ("datasets", "digits/calibration.npz"),
    "data/test.npz": ("datasets", "digits/test.npz"),
    "data/train.npz": ("datasets", "digits/train.npz"),
}


def bucket_policies() -> dict[str, dict[str, Any]]:
    """Least privilege: the writer reads the inputs and owns the results, the reader reads results."""

    def allow(account: str, actions: list[str], bucket: str, objects_only: bool = False) -> dict[str, Any]:
        objects = f"arn:aws:s3:::{bucket}/*"
        resources = [objects] if objects_only else [f"arn:aws:s3:::{bucket}", objects]
        return {"Effect": "Allow", "Principal": {"AWS": [account]}, "Action": actions, "Resource": resources}

    read = ["s3:GetObject", "s3:ListBucket"]
    return {
        "models": {"Version": "2012-10-17", "Statement": [allow(WRITER[1], read, "models")]},
        "datasets": {"Version": "2012-10-17", "Statement": [allow(WRITER[1], read, "datasets")]},
        "artifacts": {
            "Version": "2012-10-17",
            "Statement": [
                allow(WRITER[1], ["s3:*"], "artifacts"),
                allow(READER[1], ["s3:GetObject"], "artifacts", objects_only=True),
            ],
        },
    }


def store_endpoint(core: client.CoreV1Api) -> str:
    """The store as the host reaches it: the node's address and the Service's NodePort."""
    node = core.list_node().items[0]
    address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    service = core.read_namespaced_service(objectstore.SERVICE, objectstore.NAMESPACE)
    node_port = next(p.node_port for p in service.spec.ports if p.port == objectstore.PORT)
    return f"http://{address}:{node_port}"


def secret_keys(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str] | None:
    try:
        data = core.read_namespaced_secret(name, namespace).data or {}
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def ensure_account(endpoint: str, root: dict[str, str], access: str, secret: str) -> None:
    """Create the account with versitygw's own admin tool, or set its key when it exists."""
    env = {**os.environ, "ADMIN_ACCESS_KEY": root["access-key"], "ADMIN_SECRET_KEY": root["secret-key"]}
    tool = [str(ROOT / ".dev" / "bin" / "versitygw"), "admin", "--endpoint-url", endpoint]
    for action in ("create-user", "update-user"):
        argv = [*tool, action, "--access", access, "--secret", secret, "--role", "user"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            return
    sys.exit(f"error: cannot create the store account {access}: {proc.stderr.strip()}")


def ensure_secret(core: client.CoreV1Api, name: str, access: str, secret: str) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE),
        string_data={"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
    )
    try:
        core.create_namespaced_secret(NAMESPACE, body)
    except ApiException as err:
        if err.status != 409:
            raise
        core.replace_namespaced_secret(name, NAMESPACE, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", type=Path, default=ROOT / ".demo", help="what make_digits.py wrote")
    args = parser.parse_args()
    config.load_kube_config(os.environ.get("KUBECONFIG", str(ROOT / ".dev" / "kubeconfig")))
    core = client.CoreV1Api()
    root = secret_keys(core, objectstore.NAMESPACE, objectstore.ROOT_SECRET)
    if root is None:
        sys.exit("error: no object store in this cluster (Secret storage/s3-root): start it with `make cluster`")
    endpoint = store_endpoint(core)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=root["access-key"],
        aws_secret_access_key=root["secret-key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    )
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as err:
        if err.status != 409:
            raise
    # The accounts first: a bucket policy may name only accounts that exist.
    keys = {}
    for name, account in (WRITER, READER):
        kept = secret_keys(core, NAMESPACE, name)
        keys[name] = kept["AWS_SECRET_ACCESS_KEY"] if kept else secrets.token_urlsafe(30)
        ensure_account(endpoint, root, account, keys[name])
    for bucket, policy in bucket_policies().items():
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    for local, (bucket, key) in UPLOADS.items():
        s3.upload_file(str(args.demo_dir / local), bucket, key)
        print(f"uploaded {local} -> s3://{bucket}/{key}")
    for name, account in (WRITER, READER):
        ensure_secret(core, name, account, keys[name])
        print(f"Secret {NAMESPACE}/{name}: the keys of store account {account}")

if __name__ == "__main__":
    main()
