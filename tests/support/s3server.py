"""An S3-compatible server on a local address for tests: moto's server mode in its own process.

Authentication is switched on once the fixture has made an IAM user, so wrong credentials are
refused as real S3 refuses them. Pods of the dev cluster reach it when it listens on the host's
address on the node's link.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to talk to it through boto3's credential chain."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def upload(self, path: Path, uri: str) -> None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self.client().upload_file(str(path), bucket, key)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3_server(host: str, log: Path, buckets: tuple[str, ...] = ("models", "datasets", "artifacts")) -> S3Server:
    """Start moto on `host`, create an IAM user with full rights and `buckets`, then require auth."""
    port = free_port(host)
    endpoint = f"http://{host}:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto server did not start; see {log}") from None
            time.sleep(0.2)
    bootstrap = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
    iam = boto3.client("iam", **bootstrap)
    iam.create_user(UserName="optimodel-tests")
    iam.put_user_policy(UserName="optimodel-tests", PolicyName="all", PolicyDocument=json.dumps(_POLICY))
    key = iam.create_access_key(UserName="optimodel-tests")["AccessKey"]
    server = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], process=process)
    for bucket in buckets:
        server.client().create_bucket(Bucket=bucket)
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
    return server
