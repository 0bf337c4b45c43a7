"""Object stores: LocalStore on tmp_path, S3Store against a moto server over real HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import traceback
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from reelflow.config import Settings
from reelflow.storage import (
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
    create_store,
    validate_key,
)
from reelflow.storage.s3 import MULTIPART_CHUNK_BYTES

ACCESS_KEY = "moto-access-key"
SECRET_KEY = "moto-secret-key-never-logged"
REGION = "us-east-1"
LOCAL_BASE_URL = "http://127.0.0.1:3000/files"

INVALID_KEYS = ["../x", "/abs", "a//b", "a\\b", "", "a/", "a/../b", "./a", ".hidden", "a b", "é"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1, for this module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_s3_store(
    endpoint: str | None,
    bucket: str,
    *,
    region: str = REGION,
    public_base_url: str | None = None,
) -> S3Store:
    return S3Store(
        bucket=bucket,
        endpoint_url=endpoint,
        region=region,
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        public_base_url=public_base_url,
    )


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client, to look at objects behind the store's back."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each store, empty: a LocalStore under tmp_path, or an S3Store with a fresh moto bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "files", LOCAL_BASE_URL)
    s3 = make_s3_store(request.getfixturevalue("moto_endpoint"), unique_bucket())
    await s3.ensure_bucket()
    return s3


def write_random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` in 1 MiB chunks; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for offset in range(0, size, 1024 * 1024):
            chunk = os.urandom(min(1024 * 1024, size - offset))
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Both stores.


async def test_put_exists_download_round_trip_preserves_bytes(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    data = os.urandom(300_000)
    source.write_bytes(data)
    key = "executions/e1/jobs/j1/output-0.mp4"

    assert not await store.exists(key)
    url = await store.put_file(key=key, path=source, content_type="video/mp4")

    assert url == store.public_url(key)
    assert await store.exists(key)
    target = tmp_path / "downloads" / "nested" / "copy.mp4"
    await store.download_to(key=key, path=target)
    assert target.read_bytes() == data


async def test_put_overwrites_the_same_key(store: ObjectStore, tmp_path: Path) -> None:
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"first attempt")
    second.write_bytes(b"the retry, longer than the first")
    key = "out/retried.mp4"

    await store.put_file(key=key, path=first, content_type="video/mp4")
    await store.put_file(key=key, path=second, content_type="video/mp4")

    target = tmp_path / "downloaded.mp4"
    await store.download_to(key=key, path=target)
    assert target.read_bytes() == second.read_bytes()


async def test_a_consumed_file_is_stored_whole_and_published_readable(
    store: ObjectStore, tmp_path: Path
) -> None:
    # As persist leaves its spool: written 0600 by this process, given up to the store.
    source = tmp_path / "spool"
    data = os.urandom(200_000)
    descriptor = os.open(source, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(descriptor, data)
    os.close(descriptor)
    key = "executions/e1/j1/output-0.mp4"

    await store.put_file(key=key, path=source, content_type="video/mp4", consume=True)

    target = tmp_path / "copy.mp4"
    await store.download_to(key=key, path=target)
    assert target.read_bytes() == data
    if isinstance(store, LocalStore):
        # Moved into place on the same filesystem rather than written a second time.
        assert not source.exists()
        assert stat.S_IMODE((store.root / key).stat().st_mode) == 0o644


async def test_download_replaces_an_existing_local_file(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source.jpg"
    source.write_bytes(b"thumbnail")
    await store.put_file(key="thumb.jpg", path=source, content_type="image/jpeg")
    target = tmp_path / "target.jpg"
    target.write_bytes(b"stale content that is longer than the object")

    await store.download_to(key="thumb.jpg", path=target)

    assert target.read_bytes() == b"thumbnail"


async def test_delete_removes_the_object_and_missing_keys_are_fine(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(b"video")
    await store.put_file(key="a/b.mp4", path=source, content_type="video/mp4")

    await store.delete("a/b.mp4")
    assert not await store.exists("a/b.mp4")
    await store.delete("a/b.mp4")
    await store.delete("never/stored.mp4")


async def test_download_of_missing_key_raises_object_not_found(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(ObjectNotFound):
        await store.download_to(key="missing.mp4", path=tmp_path / "out.mp4")


async def test_put_of_missing_local_file_raises_os_error(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await store.put_file(key="x.mp4", path=tmp_path / "absent.mp4", content_type="video/mp4")


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_are_rejected_by_every_method(
    store: ObjectStore, tmp_path: Path, key: str
) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(b"video")

    with pytest.raises(InvalidKey):
        await store.put_file(key=key, path=source, content_type="video/mp4")
    with pytest.raises(InvalidKey):
        await store.exists(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)
    with pytest.raises(InvalidKey):
        await store.download_to(key=key, path=tmp_path / "out.mp4")
    with pytest.raises(InvalidKey):
        store.public_url(key)
    # Nothing escaped the store's root next to tmp_path.
    assert sorted(p.name for p in tmp_path.iterdir()) in (["source.mp4"], ["files", "source.mp4"])


async def test_file_larger_than_multipart_threshold_round_trips(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.mp4"
    expected = write_random_file(source, 20 * 1024 * 1024)

    await store.put_file(key="big/video.mp4", path=source, content_type="video/mp4")
    target = tmp_path / "big-copy.mp4"
    await store.download_to(key="big/video.mp4", path=target)

    assert sha256_of(target) == expected


async def test_check_passes_for_a_usable_store(store: ObjectStore) -> None:
    await store.check()


# S3 only.


async def test_s3_stores_content_type(moto_endpoint: str, tmp_path: Path) -> None:
    store = make_s3_store(moto_endpoint, unique_bucket())
    await store.ensure_bucket()
    source = tmp_path / "thumb.jpg"
    source.write_bytes(b"\xff\xd8\xff jpeg-ish")

    await store.put_file(key="t/thumb.jpg", path=source, content_type="image/jpeg")

    head = raw_client(moto_endpoint).head_object(Bucket=store.bucket, Key="t/thumb.jpg")
    assert head["ContentType"] == "image/jpeg"


async def test_s3_large_file_goes_up_multipart_with_its_content_type(
    moto_endpoint: str, tmp_path: Path
) -> None:
    store = make_s3_store(moto_endpoint, unique_bucket())
    await store.ensure_bucket()
    source = tmp_path / "big.mp4"
    write_random_file(source, 20 * 1024 * 1024)

    await store.put_file(key="big.mp4", path=source, content_type="video/mp4")

    head = raw_client(moto_endpoint).head_object(Bucket=store.bucket, Key="big.mp4")
    # A multipart ETag is `"<md5 of part md5s>-<part count>"`.
    parts = -(-source.stat().st_size // MULTIPART_CHUNK_BYTES)
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert head["ContentType"] == "video/mp4"
    assert head["ContentLength"] == source.stat().st_size


async def test_s3_public_url_serves_the_object_from_a_public_bucket(
    moto_endpoint: str, tmp_path: Path
) -> None:
    store = make_s3_store(moto_endpoint, unique_bucket())
    await store.ensure_bucket()
    # Like moto, real buckets are private: public URLs need a public-read policy (or a CDN).
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{store.bucket}/*",
            }
        ],
    }
    raw_client(moto_endpoint).put_bucket_policy(Bucket=store.bucket, Policy=json.dumps(public_read))
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"public bytes")

    url = await store.put_file(key="c/clip.mp4", path=source, content_type="video/mp4")

    assert url == f"{moto_endpoint}/{store.bucket}/c/clip.mp4"
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"public bytes"


async def test_s3_ensure_bucket_is_idempotent(moto_endpoint: str) -> None:
    store = make_s3_store(moto_endpoint, unique_bucket())
    await store.ensure_bucket()
    await store.ensure_bucket()
    await store.check()


async def test_s3_check_of_missing_bucket_fails_without_leaking_the_secret(
    moto_endpoint: str,
) -> None:
    store = make_s3_store(moto_endpoint, "bucket-that-was-never-created")

    with pytest.raises(StorageMisconfigured) as caught:
        await store.check()

    assert "bucket-that-was-never-created" in str(caught.value)
    assert SECRET_KEY not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchBucket", 404, StorageMisconfigured),
        ("403", 403, StorageMisconfigured),
        ("SignatureDoesNotMatch", 403, StorageMisconfigured),
        ("PermanentRedirect", 301, StorageMisconfigured),
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("InvalidRequest", 400, StorageError),
    ],
)
async def test_s3_errors_map_to_storage_errors_and_redact_credentials(
    code: str, status: int, expected: type[StorageError]
) -> None:
    store = make_s3_store("http://s3.invalid", "media")
    # Stubbing the store's own client is the only way to make S3 answer with an echoed secret.
    with Stubber(store._client) as stubber:
        stubber.add_client_error(
            "head_bucket",
            service_error_code=code,
            service_message=f"echoing {ACCESS_KEY} and {SECRET_KEY}",
            http_status_code=status,
        )
        with pytest.raises(StorageError) as caught:
            await store.check()

    assert type(caught.value) is expected
    assert SECRET_KEY not in str(caught.value)
    assert ACCESS_KEY not in str(caught.value)


async def test_s3_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = make_s3_store(f"http://127.0.0.1:{port}", "media")

    with pytest.raises(StorageUnavailable) as caught:
        await store.check()
    assert SECRET_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "bucket", "region", "cdn", "expected"),
    [
        (
            "https://acct.r2.cloudflarestorage.com",
            "media",
            "auto",
            "https://cdn.example.com/",
            "https://cdn.example.com/a/b.mp4",
        ),
        (None, "media", "eu-west-1", "https://cdn.example.com", "https://cdn.example.com/a/b.mp4"),
        (
            "http://127.0.0.1:9000/",
            "media",
            "us-east-1",
            None,
            "http://127.0.0.1:9000/media/a/b.mp4",
        ),
        (None, "media", "eu-west-1", None, "https://media.s3.eu-west-1.amazonaws.com/a/b.mp4"),
        (None, "media", "us-east-1", None, "https://media.s3.us-east-1.amazonaws.com/a/b.mp4"),
        (
            None,
            "my.media",
            "eu-west-1",
            None,
            "https://s3.eu-west-1.amazonaws.com/my.media/a/b.mp4",
        ),
    ],
    ids=["cdn-r2", "cdn-aws", "custom-endpoint", "aws", "aws-us-east-1", "aws-dotted-bucket"],
)
def test_s3_public_url_formats(
    endpoint: str | None, bucket: str, region: str, cdn: str | None, expected: str
) -> None:
    store = make_s3_store(endpoint, bucket, region=region, public_base_url=cdn)
    assert store.public_url("a/b.mp4") == expected


def test_s3_region_auto_needs_an_endpoint() -> None:
    with pytest.raises(StorageMisconfigured, match="S3_REGION"):
        make_s3_store(None, "media", region="auto")


def test_s3_needs_both_credentials_or_neither() -> None:
    with pytest.raises(StorageMisconfigured, match="S3_SECRET_KEY"):
        S3Store(
            bucket="media",
            endpoint_url="http://127.0.0.1:9000",
            region=REGION,
            access_key=SecretStr(ACCESS_KEY),
            secret_key=None,
            public_base_url=None,
        )


# Local only.


def test_local_public_url_and_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "http://api.test/files/")
    assert store.root == tmp_path
    assert store.public_url("a/b.mp4") == "http://api.test/files/a/b.mp4"


async def test_local_put_leaves_no_temp_files_and_a_readable_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "files", LOCAL_BASE_URL)
    source = tmp_path / "source.mp4"
    source.write_bytes(b"video")

    await store.put_file(key="a/b.mp4", path=source, content_type="video/mp4")
    await store.put_file(key="a/b.mp4", path=source, content_type="video/mp4")

    assert [p.name for p in (tmp_path / "files" / "a").iterdir()] == ["b.mp4"]
    assert (tmp_path / "files" / "a" / "b.mp4").stat().st_mode & 0o777 == 0o644


async def test_local_warns_when_extension_disagrees_with_content_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "files", LOCAL_BASE_URL)
    source = tmp_path / "source"
    source.write_bytes(b"video")

    with caplog.at_level(logging.WARNING, logger="reelflow.storage.local"):
        await store.put_file(key="ok.mp4", path=source, content_type="video/mp4")
        assert not caplog.records
        await store.put_file(key="no-extension", path=source, content_type="video/mp4")
    assert "no-extension" in caplog.text


async def test_local_check_creates_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not" / "yet", LOCAL_BASE_URL)
    await store.check()
    assert (tmp_path / "not" / "yet").is_dir()
    assert list((tmp_path / "not" / "yet").iterdir()) == []


async def test_local_check_of_unusable_root_fails(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_bytes(b"not a directory")
    with pytest.raises(StorageMisconfigured):
        await LocalStore(root, LOCAL_BASE_URL).check()


# Keys and factory.


@pytest.mark.parametrize("key", ["a", "a/b.mp4", "executions/0f3c/jobs/j-1_x/output-0.mp4"])
def test_valid_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", [*INVALID_KEYS, "k" * 1025])
def test_invalid_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_create_store_picks_s3_when_a_bucket_is_set() -> None:
    settings = Settings(
        _env_file=None,
        s3_bucket="media",
        s3_url="http://127.0.0.1:9000/",
        s3_region=REGION,
        s3_access_key=SecretStr(ACCESS_KEY),
        s3_secret_key=SecretStr(SECRET_KEY),
        cdn_base_url="https://cdn.example.com",
    )
    store = create_store(settings)
    assert isinstance(store, S3Store)
    assert store.bucket == "media"
    assert store.public_url("a.mp4") == "https://cdn.example.com/a.mp4"


def test_create_store_picks_local_without_a_bucket(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        s3_bucket=None,
        cdn_base_url=None,
        storage_dir=tmp_path,
        api_base_url="http://api.test",
    )
    store = create_store(settings)
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path
    assert store.public_url("a.mp4") == "http://api.test/files/a.mp4"


# key_for: the inverse of public_url.


@pytest.mark.parametrize("key", ["a.mp4", "executions/e1/j-1_x/output-0.mp4"])
async def test_key_for_inverts_public_url(store: ObjectStore, key: str) -> None:
    assert store.key_for(store.public_url(key)) == key


async def test_key_for_of_a_stored_object_url_downloads_it(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(b"parent output")
    url = await store.put_file(key="e/j/output-0.mp4", path=source, content_type="video/mp4")

    key = store.key_for(url)
    assert key is not None
    await store.download_to(key=key, path=tmp_path / "copy.mp4")
    assert (tmp_path / "copy.mp4").read_bytes() == b"parent output"


def test_local_key_for_rejects_other_urls() -> None:
    store = LocalStore(Path("unused"), "http://127.0.0.1:3000/files/")
    assert store.key_for("HTTP://127.0.0.1:3000/files/a/b.mp4?v=2") == "a/b.mp4"
    for url in [
        "https://replicate.delivery/pbxt/abc/output.mp4",
        "http://127.0.0.1:3001/files/a.mp4",
        "https://127.0.0.1:3000/files/a.mp4",
        "http://127.0.0.1:3000/filesx/a.mp4",
        "http://127.0.0.1:3000/files/",
        "http://127.0.0.1:3000/files",
        "http://127.0.0.1:3000/files/a/../../secret",
        "http://127.0.0.1:3000/files/a%2Fb.mp4",
        "http://127.0.0.1:3000/files//a.mp4",
        "not a url",
    ]:
        assert store.key_for(url) is None, url


@pytest.mark.parametrize(
    ("endpoint", "cdn", "url", "expected"),
    [
        (None, "https://cdn.example.com/", "https://cdn.example.com/a/b.mp4", "a/b.mp4"),
        (None, "https://cdn.example.com/media", "https://cdn.example.com/media/a.mp4", "a.mp4"),
        (None, "https://cdn.example.com/media", "https://cdn.example.com/a.mp4", None),
        (None, None, "https://media.s3.eu-west-1.amazonaws.com/a.mp4", "a.mp4"),
        (None, None, "https://other.s3.eu-west-1.amazonaws.com/a.mp4", None),
        ("http://127.0.0.1:9000", None, "http://127.0.0.1:9000/media/a.mp4", "a.mp4"),
        ("http://127.0.0.1:9000", None, "http://127.0.0.1:9000/other/a.mp4", None),
        (None, "https://cdn.example.com", "https://replicate.delivery/x/out.mp4", None),
    ],
    ids=[
        "cdn",
        "cdn-with-path",
        "cdn-outside-path",
        "aws",
        "aws-other-bucket",
        "endpoint",
        "endpoint-other-bucket",
        "foreign",
    ],
)
def test_s3_key_for_recognises_only_its_own_urls(
    endpoint: str | None, cdn: str | None, url: str, expected: str | None
) -> None:
    store = make_s3_store(endpoint, "media", region="eu-west-1", public_base_url=cdn)
    assert store.key_for(url) == expected
