"""Object storage for outputs: an S3-compatible bucket, or a local directory served by the API.

See `reelflow.storage.base` for the `ObjectStore` interface and the error hierarchy.
"""

from __future__ import annotations

from reelflow.config import Settings
from reelflow.storage.base import (
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
    validate_key,
)
from reelflow.storage.local import LocalStore
from reelflow.storage.s3 import S3Store

__all__ = [
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "StorageMisconfigured",
    "StorageUnavailable",
    "create_store",
    "validate_key",
]


def create_store(settings: Settings) -> ObjectStore:
    """The store the settings describe: S3 when `s3_bucket` is set, else a local directory.

    Args:
        settings: reelflow settings; `s3_url`, `s3_region`, `s3_access_key`, `s3_secret_key`,
            `s3_bucket` and `cdn_base_url` configure S3, `files_dir` and `public_files_base`
            the local directory.

    Returns:
        An `S3Store` or a `LocalStore`.

    Raises:
        StorageMisconfigured: the S3 settings cannot work (e.g. region `auto` without `s3_url`).
    """
    if settings.s3_bucket:
        return S3Store(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            public_base_url=settings.cdn_base_url,
        )
    return LocalStore(settings.files_dir, settings.public_files_base)
