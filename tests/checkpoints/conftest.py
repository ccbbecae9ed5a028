"""The local S3 server (moto's server mode on 127.0.0.1) the S3 tests write runs into."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

BUCKET = "rl-runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client, f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    server.stop()


def upload(client, local: Path, prefix: str, only=None) -> None:
    for p in sorted(local.rglob("*")):
        rel = p.relative_to(local).as_posix()
        if p.is_file() and (only is None or only(rel)):
            client.upload_file(str(p), BUCKET, f"{prefix}/{rel}")


