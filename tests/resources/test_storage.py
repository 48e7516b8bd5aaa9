"""The one storage layer, on a local folder and on a real S3 API (moto's server on 127.0.0.1):
the same verbs, the same answers."""

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.storage import Storage, StorageError, open_root


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "root"))
    return Storage(request.getfixturevalue("s3_root"))


def test_written_objects_read_back_whole_and_list_sorted_under_their_folder(storage):
    storage.write("a/2.txt", b"two")
    storage.write("a/b/1.txt", b"one")
    storage.write("c/3.txt", b"three")
    assert storage.read("a/b/1.txt") == b"one"
    assert [(e.key, e.size) for e in storage.list("a")] == [("a/2.txt", 3), ("a/b/1.txt", 3)]
    assert all(e.modified_ns > 0 for e in storage.list("a"))
    assert storage.read_many(["c/3.txt", "a/2.txt"]) == [b"three", b"two"]
    assert [[e.key for e in listing] for listing in storage.list_many(["c", "none"])] == [
        ["c/3.txt"],
        [],
    ]


def test_a_rewrite_replaces_the_object_and_a_delete_removes_it(storage):
    storage.write("x.bin", b"old old old")
    storage.write("x.bin", b"new")
    assert storage.read("x.bin") == b"new"
    assert storage.exists("x.bin") and not storage.exists("y.bin")
    storage.delete("x.bin")
    storage.delete("x.bin")  # gone already: no error
    assert not storage.exists("x.bin") and storage.list("") == []
    with pytest.raises(FileNotFoundError):
        storage.read("x.bin")


def test_parquet_footers_and_datasets_read_through_the_storage(storage):
    table = pa.table({"n": [1, 2, 3]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write("lake/t/part-0.parquet", sink.getvalue().to_pybytes())
    [footer] = storage.parquet_metadata(["lake/t/part-0.parquet"])
    assert footer.num_rows == 3
    assert storage.parquet_table(["lake/t/part-0.parquet"], table.schema) == table


def test_urls_name_the_root_as_a_user_opens_it(storage, tmp_path):
    if storage.local:
        assert storage.url("lake") == str((tmp_path / "root" / "lake").resolve())
    else:
        assert storage.url("lake").startswith("s3://t-") and storage.url("lake").endswith(
            "/data/lake"
        )


def test_a_local_write_leaves_no_temp_file_and_a_durable_one_makes_its_folders(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write("deep/er/f.ndjson", b"{}\n", durable=True)
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["f.ndjson"]
    (tmp_path / "deep" / "er" / ".f.ndjson.123.tmp").write_bytes(b"half")  # a crash's leftover
    assert [e.key for e in storage.list("deep")] == ["deep/er/f.ndjson"]


def test_a_failed_local_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path))
    storage.write("f.txt", b"old")

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("resources.storage.os.replace", disk_full)
    with pytest.raises(StorageError, match=r"writing .*f.txt failed: .*No space left"):
        storage.write("f.txt", b"new")
    assert (tmp_path / "f.txt").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_an_object_is_read_whole_in_one_get(s3_server, s3_root):
    # Read as a stream it would take 256 KiB per ranged GET: 12 requests for these 3 MiB.
    storage = Storage(s3_root)
    data = bytes(range(256)) * (3 * 4096)
    storage.write("big/object.bin", data)
    assert storage.read("big/object.bin") == data
    assert storage.read_many(["big/object.bin", "big/object.bin"]) == [data, data]
    path = f"/{storage.path('big/object.bin')}"
    deadline = time.monotonic() + 5  # moto logs a request just after answering it
    while s3_server.requests("GET", path) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s3_server.requests("GET", path) == 3


def test_an_unreachable_store_is_a_storage_error_naming_the_object(s3_server, s3_root):
    storage = Storage(s3_root)
    storage.write("kept.txt", b"kept")
    with s3_server.outage():
        with pytest.raises(StorageError, match=r"writing s3://.*/data/new.txt failed"):
            storage.write("new.txt", b"new")
        with pytest.raises(StorageError, match="listing"):
            storage.list("")
    assert storage.read("kept.txt") == b"kept" and not storage.exists("new.txt")


@pytest.mark.parametrize(
    ("root", "message"),
    [("s3://", "names no bucket"), ("ftp://host/x", "use a local folder or an s3://")],
)
def test_a_root_that_cannot_be_used_is_refused_clearly(root, message):
    with pytest.raises(StorageError, match=message):
        open_root(root)


def test_a_relative_local_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, base, local = open_root("./data")
    assert local and base == str(Path(tmp_path / "data").resolve())
