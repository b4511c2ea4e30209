"""moto's standalone S3 server as a real process on loopback, for the S3 storage path of the tests and benchmarks.

It speaks the S3 protocol over HTTP (multipart uploads, ranged GETs, presigned URLs) and keeps objects in its own
memory. It accepts any credentials and does not check signatures or their expiry.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3

from .processes import Process
from .util import free_port, port_open, wait_until

ACCESS_KEY = "moto-access-key"
SECRET_KEY = "moto-secret-key"
REGION = "us-east-1"


class S3Server:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = Process("moto", args, env=dict(os.environ), log_dir=log_dir)

    def start(self) -> S3Server:
        self.process.start()
        wait_until(lambda: port_open(self.port), timeout=30, message="moto's S3 server", details=self.process.tail)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> object:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        return sorted(o["Key"] for o in self.client().list_objects_v2(Bucket=bucket).get("Contents", []))

    def env(self, bucket: str, **extra: str) -> dict[str, str]:
        """The settings (environment) of a process storing artifacts in ``bucket``."""
        return {
            "ARTIFACT_STORAGE": "s3",
            "ARTIFACT_S3_BUCKET": bucket,
            "ARTIFACT_S3_ENDPOINT_URL": self.endpoint,
            "ARTIFACT_S3_REGION": REGION,
            "ARTIFACT_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "ARTIFACT_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "ARTIFACT_S3_ADDRESSING_STYLE": "path",
            **extra,
        }

    def storage_options(self, bucket: str) -> dict:
        """The same as ``STORAGES["artifacts"]`` options, for a test process's own settings."""
        return {
            "bucket_name": bucket, "endpoint_url": self.endpoint, "region_name": REGION, "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY, "addressing_style": "path", "signature_version": "s3v4", "file_overwrite": True,
        }  # fmt: skip
