"""S3 for the backup tests: moto's server on an address the backup jobs reach, and the settings that point a
platform at it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from .harness import VENV_BIN, free_port, wait_for

__all__ = ["S3_BUCKET", "S3_KEY", "S3_SECRET", "backup_env", "moto_s3", "s3_client"]

S3_KEY, S3_SECRET, S3_BUCKET = "agenthost-test", "agenthost-test-secret", "ah-test-backups"


def _open(address: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((address, port)) == 0


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name="us-east-1"
    )


@contextmanager
def moto_s3(address: str = "127.0.0.1", make_bucket: bool = False) -> Iterator[str]:
    """moto on ``address`` and a free port while the block runs; yields its endpoint. ``make_bucket`` creates the
    tests' bucket first (restic on Docker makes it itself; the Nomad tests' jobs expect it)."""
    port = free_port()
    moto = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", address, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://{address}:{port}"
    try:
        wait_for(lambda: _open(address, port), 30, what="moto S3 server")
        if make_bucket:
            s3_client(endpoint).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        moto.terminate()
        moto.wait(10)


def backup_env(endpoint: str) -> dict[str, str]:
    """A platform's settings for backups to the tests' bucket at ``endpoint``."""
    return {
        "AGENTHOST_BACKUP_TARGET": "s3",
        "AGENTHOST_BACKUP_S3_ENDPOINT": endpoint,
        "AGENTHOST_BACKUP_S3_BUCKET": S3_BUCKET,
        "AGENTHOST_BACKUP_S3_ACCESS_KEY": S3_KEY,
        "AGENTHOST_BACKUP_S3_SECRET_KEY": S3_SECRET,
    }
