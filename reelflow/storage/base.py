"""The object store interface, its errors and the key rules every store shares.

Errors raised by object stores:

    StorageError              base class, catch this
    ├── InvalidKey            the key is not a safe relative path: a bug in the caller, never retry
    ├── ObjectNotFound        no object is stored under the key
    ├── StorageMisconfigured  missing bucket or directory, access denied, bad or missing
    │                         credentials, wrong region: fix the configuration, don't retry
    └── StorageUnavailable    network error, timeout, 5xx, throttling: retry with backoff

A failure on the *caller's* local file (the `path` given to `put_file` or `download_to`) is not
a storage error and propagates as the `OSError` it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "MAX_KEY_LENGTH",
    "InvalidKey",
    "ObjectNotFound",
    "ObjectStore",
    "StorageError",
    "StorageMisconfigured",
    "StorageUnavailable",
    "key_under",
    "validate_key",
]

MAX_KEY_LENGTH = 1024
"""S3's limit on key length, in bytes; keys are ASCII, so also in characters."""

# Segments are limited to characters that need no escaping in a URL or a file name, so a key is
# its own URL path and its own relative file path on every platform. A segment may not start with
# a dot: that rules out `.` and `..`, hidden files, and collisions with LocalStore's temp files.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class StorageError(Exception):
    """Base class of every object store error."""


class InvalidKey(StorageError):
    """The key is not a safe relative `/`-separated path (see `validate_key`)."""


class ObjectNotFound(StorageError):
    """No object is stored under the key."""


class StorageMisconfigured(StorageError):
    """The bucket or directory is missing or not accessible with the configured credentials."""


class StorageUnavailable(StorageError):
    """A transient failure: network error, timeout, server error or throttling."""


def validate_key(key: str) -> str:
    """Check that `key` is a safe object key and return it unchanged.

    A key is relative and `/`-separated; each segment is non-empty, made of ASCII letters,
    digits, `.`, `_` and `-`, and does not start with `.` (so no `..`). Keys are at most
    `MAX_KEY_LENGTH` characters.

    Args:
        key: The object key, e.g. `executions/<id>/<job>/output-0.mp4`.

    Returns:
        The key, unchanged.

    Raises:
        InvalidKey: the key breaks one of the rules above.
    """
    if not key:
        raise InvalidKey("object key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"object key is longer than {MAX_KEY_LENGTH} characters")
    if not all(_SEGMENT.fullmatch(segment) for segment in key.split("/")):
        raise InvalidKey(
            f"invalid object key {key!r}: expected relative '/'-separated segments of "
            "[A-Za-z0-9._-], none empty and none starting with '.'"
        )
    return key


def key_under(base_url: str, url: str) -> str | None:
    """The key whose public URL is `url` when objects are served under `base_url`, else None.

    Scheme and host compare case-insensitively; a query or fragment is ignored (a CDN
    cache-buster, say). Since keys need no escaping, a URL whose remainder is not a valid key
    (percent-escapes, `..`, an empty segment) is not one of ours.

    Args:
        base_url: Base of the store's public URLs, without a trailing slash.
        url: Any URL.
    """
    base, candidate = urlsplit(base_url), urlsplit(url)
    if (candidate.scheme.lower(), candidate.netloc.lower()) != (
        base.scheme.lower(),
        base.netloc.lower(),
    ):
        return None
    prefix = base.path.rstrip("/") + "/"
    if not candidate.path.startswith(prefix):
        return None
    key = candidate.path[len(prefix) :]
    try:
        return validate_key(key)
    except InvalidKey:
        return None


class ObjectStore(Protocol):
    """Where outputs live: an S3-compatible bucket or a local directory served over HTTP.

    Every method validates its key with `validate_key` and raises only `StorageError`
    subclasses (plus `OSError` for the caller's own local file). Keys are deterministic, so a
    retried write overwrites the same object rather than adding one.
    """

    async def put_file(
        self, *, key: str, path: Path, content_type: str, consume: bool = False
    ) -> str:
        """Store a complete local file under `key`, replacing any object already there.

        The file is streamed (multipart for S3), never read into memory whole. Readers never see a
        partly written object.

        Args:
            key: Destination key.
            path: The local file to upload; it must be fully written.
            content_type: MIME type served with the object, e.g. `video/mp4`.
            consume: The caller gives `path` up: the store may move it into place rather than
                copy it (a local store on the same filesystem does), so it may be gone after.

        Returns:
            The object's public URL (`public_url(key)`).

        Raises:
            StorageError: the object could not be stored.
            OSError: `path` could not be read.
        """
        ...

    def public_url(self, key: str) -> str:
        """The URL under which clients download the object stored under `key`."""
        ...

    def key_for(self, url: str) -> str | None:
        """The key of the object of this store whose public URL is `url`, else None.

        The inverse of `public_url`: it lets a job read a parent's output straight from the
        store (`download_to`) rather than over HTTP. Nothing is looked up; the object need not
        exist.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the object under `key`; deleting a missing object is not an error."""
        ...

    async def download_to(self, *, key: str, path: Path) -> None:
        """Stream the object under `key` into the local file `path`, replacing it.

        Missing parent directories of `path` are created.

        Raises:
            ObjectNotFound: no object is stored under `key`.
            StorageError: the store failed.
            OSError: `path` could not be written.
        """
        ...

    async def check(self) -> None:
        """Readiness probe: verify that the bucket or directory is usable.

        Raises:
            StorageError: the store cannot be used (usually `StorageMisconfigured`).
        """
        ...
