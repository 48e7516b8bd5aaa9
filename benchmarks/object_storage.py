"""The pipeline benchmarks on object storage: the same landing copied into a bucket of a real
S3 API on 127.0.0.1 (moto's server, ``tests.s3_server``), for runs pointed at it."""

from __future__ import annotations

import os
from pathlib import Path

from resources.storage import Storage
from tests.s3_server import S3Server

BUCKET = "bench"
OUTPUT_FOLDERS = ("lake", "cbf")


def bucket_with_landing(s3: S3Server, data_dir: Path) -> Storage:
    """A fresh bucket holding a copy of ``data_dir``'s landing zone, reached directly (no
    relay: the benchmark measures the store, not the test's outage switch). Sets this
    process's AWS environment to it."""
    os.environ.update(s3.env(direct=True))
    storage = Storage(s3.create_bucket(BUCKET) + "/data")
    for path in sorted((data_dir / "landing").rglob("*.ndjson")):
        storage.write(path.relative_to(data_dir).as_posix(), path.read_bytes())
    return storage


def clear_outputs(storage: Storage) -> None:
    """Remove what an earlier round wrote (lake and CBF files), keeping the landing."""
    for folder in OUTPUT_FOLDERS:
        for entry in storage.list(folder):
            storage.delete(entry.key)
