"""One storage root for every room: a local folder, or an object store (``s3://``, ``gs://``,
``az://``), through pyarrow's filesystems.

Why pyarrow's: it already is the lake's Parquet engine; its S3, GCS and Azure clients are C++,
so reads run in parallel without the GIL; and DuckDB scans the Arrow datasets it opens, so
reading the lake from object storage needs no DuckDB extension (``httpfs`` cannot be fetched
at run time here). Settings come from each cloud's standard environment: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``), ``AWS_REGION``, keys or an instance role for S3;
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS; ``AZURE_STORAGE_ACCOUNT_NAME`` and a key or a
managed identity for Azure.

Keys are POSIX paths relative to the root (``lake/spend_events/date=…/hour=…/part-0.parquet``).
Every write is whole: on a local disk a temp file renamed over the target (and, when
``durable``, fsync'd with its folder), on object storage one PUT. A reader sees the old
object or the new one, never a part; names starting with ``.`` (temp files) are never listed.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Reads of many small objects (landed files, Parquet footers) overlap this many requests.
PARALLEL_READS = 16
# An object store that does not answer within these is down for this write or read: the
# receiver answers 503 and LiteLLM may retry, a pipeline step fails and can be re-run.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3


class StorageError(RuntimeError):
    """The storage root could not be read or written; the message names the root and key."""


@dataclass(frozen=True)
class Entry:
    """An object (or file) under the root."""

    key: str
    size: int
    modified_ns: int


def _s3(bucket_and_prefix: str) -> tuple[pafs.FileSystem, str]:
    endpoint = os.getenv("AWS_ENDPOINT_URL_S3") or os.getenv("AWS_ENDPOINT_URL")
    options: dict = {
        "region": os.getenv("AWS_REGION") or os.getenv("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
    }
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    return pafs.S3FileSystem(**options), bucket_and_prefix


def _azure(container_and_prefix: str) -> tuple[pafs.FileSystem, str]:
    account = os.getenv("AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise StorageError("an az:// root needs AZURE_STORAGE_ACCOUNT_NAME")
    key = os.getenv("AZURE_STORAGE_ACCOUNT_KEY")
    return pafs.AzureFileSystem(account_name=account, account_key=key), container_and_prefix


def open_root(root: str) -> tuple[pafs.FileSystem, str, bool]:
    """The filesystem of ``root``, the root's path in it, and whether it is a local disk."""
    scheme, _, rest = root.partition("://") if "://" in root else ("", "", root)
    if scheme in ("", "file"):
        return pafs.LocalFileSystem(), str(Path(rest).expanduser().resolve()), True
    rest = rest.strip("/")
    if not rest:
        raise StorageError(f"storage root {root!r} names no bucket")
    if scheme == "s3":
        return (*_s3(rest), False)
    if scheme == "gs":
        return pafs.GcsFileSystem(), rest, False
    if scheme == "az":
        return (*_azure(rest), False)
    raise StorageError(f"storage root {root!r}: use a local folder or an s3://, gs:// or az:// URL")


class Storage:
    """The verbs every room needs of its data, under one root (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.base, self.local = open_root(root)

    def path(self, key: str) -> str:
        """The key's path in the filesystem (a local path, or ``bucket/prefix/key``)."""
        return f"{self.base}/{key}" if key else self.base

    def url(self, key: str = "") -> str:
        """The key as a user opens it: a local path, or ``s3://bucket/prefix/key``."""
        if self.local:
            return self.path(key)
        return f"{self.root.split('://', 1)[0]}://{self.path(key)}"

    def _fail(self, verb: str, key: str, error: Exception) -> StorageError:
        return StorageError(f"{verb} {self.url(key)} failed: {error}")

    # --- writing ---------------------------------------------------------------------------

    def write(self, key: str, data: bytes, *, durable: bool = False) -> None:
        """Put ``data`` at ``key`` whole, replacing what was there."""
        try:
            if self.local:
                _write_local(Path(self.path(key)), data, durable)
            else:
                with self.fs.open_output_stream(self.path(key), metadata={}) as out:
                    out.write(data)
        except (OSError, pa.ArrowException) as error:
            raise self._fail("writing", key, error) from error

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self.path(key))
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as error:
            raise self._fail("deleting", key, error) from error

    # --- reading ---------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when there is none."""
        try:
            # A file, not a stream: a stream has no size, so reading it whole takes 256 KiB
            # at a time, each a ranged GET on object storage (401 requests for 100 MB); a
            # file reads its size (one HEAD) and then the object in one GET.
            with self.fs.open_input_file(self.path(key)) as source:
                return source.read()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as error:
            raise self._fail("reading", key, error) from error

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        """The bytes of every key, in order, read side by side."""
        if len(keys) <= 1 or self.local:
            return [self.read(k) for k in keys]
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            return list(pool.map(self.read, keys))

    def exists(self, key: str) -> bool:
        return self._info(key).type != pafs.FileType.NotFound

    def _info(self, key: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(key))
        except (OSError, pa.ArrowException) as error:
            raise self._fail("looking up", key, error) from error

    def list(self, prefix: str) -> list[Entry]:
        """Every object under the folder ``prefix``, sorted by key; none when it is absent."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as error:
            raise self._fail("listing", prefix, error) from error
        start = len(self.base) + 1
        entries = [
            Entry(info.path[start:], info.size or 0, info.mtime_ns or 0)
            for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        ]
        return sorted(entries, key=lambda e: e.key)

    def list_many(self, prefixes: Sequence[str]) -> list[list[Entry]]:
        """``list`` of each prefix, side by side on object storage."""
        if len(prefixes) <= 1 or self.local:
            return [self.list(p) for p in prefixes]
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            return list(pool.map(self.list, prefixes))

    # --- Parquet ---------------------------------------------------------------------------

    def parquet_metadata(self, keys: Sequence[str]) -> list[pq.FileMetaData]:
        """The footers of ``keys`` (row counts, schemas), side by side."""

        def footer(key: str) -> pq.FileMetaData:
            try:
                return pq.read_metadata(self.path(key), filesystem=self.fs)
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowException) as error:
                raise self._fail("reading the Parquet footer of", key, error) from error

        if len(keys) <= 1 or self.local:
            return [footer(k) for k in keys]
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            return list(pool.map(footer, keys))

    def parquet_table(self, keys: Sequence[str], schema: pa.Schema) -> pa.Table:
        """The Parquet objects as one Arrow table of ``schema``: on object storage each object
        is fetched whole in one request (side by side), then decoded in memory."""
        if self.local:
            return ds.dataset(
                [self.path(k) for k in keys], schema=schema, format="parquet"
            ).to_table()
        tables = [pq.read_table(pa.BufferReader(data)) for data in self.read_many(keys)]
        if not tables:
            return schema.empty_table()
        return pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in tables])


@functools.cache
def storage_at(root: str) -> Storage:
    """The ``Storage`` of a root, made once per process (its clients are reused)."""
    return Storage(root)


class StorageResource(dg.ConfigurableResource):
    """Where all data lives: ``SPEND_DATA_DIR``, a local folder or an ``s3://``, ``gs://``
    or ``az://`` URL (landing zone, lake, CBF files, CloudZero receipts and dry runs)."""

    root: str = "./data"

    def storage(self) -> Storage:
        return storage_at(self.root)


# --- local disk ---------------------------------------------------------------------------


def _write_local(path: Path, data: bytes, durable: bool) -> None:
    """Temp file then rename, so readers never see half a file; with ``durable`` every step
    (the data, the rename, new folders) is fsync'd, so an acknowledged write survives a crash."""
    if durable:
        _make_dirs_durably(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)  # gone already once renamed


def _make_dirs_durably(folder: Path) -> None:
    """``mkdir -p`` whose new entries survive a power loss (each parent is fsync'd)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
