"""An object store in an S3-compatible bucket: AWS S3, Cloudflare R2, MinIO (and moto in tests)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import boto3
from boto3.exceptions import Boto3Error, RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import SecretStr

from reelflow.storage.base import (
    ObjectNotFound,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
    key_under,
    validate_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

__all__ = ["MULTIPART_CHUNK_BYTES", "S3Store"]

logger = logging.getLogger(__name__)

MULTIPART_CHUNK_BYTES = 8 * 1024 * 1024
"""Files at least this big are uploaded in parts of this size."""

# At most this many parts are in flight (and in memory) per transfer: 32 MiB, whatever the size
# of the file, while still using several connections for a big video.
_TRANSFER_CONCURRENCY = 4

# Regions in which CreateBucket takes no LocationConstraint: us-east-1 rejects one, and R2's
# "auto" is not a location.
_DEFAULT_LOCATION_REGIONS = frozenset({"us-east-1", "auto"})

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "Unauthorized",
    }
)
_WRONG_REGION_CODES = frozenset({"301", "PermanentRedirect", "IllegalLocationConstraintException"})
_TRANSIENT_CODES = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling"}
)


class S3Store:
    """Objects in one S3-compatible bucket.

    One boto3 client is created per store and shared by all calls (boto3 clients are
    thread-safe); each blocking call runs in a worker thread. `public_url` assumes the objects
    are publicly readable there: through `public_base_url` (a CDN or, for R2, the bucket's public
    domain, which R2 requires since its S3 endpoint is never public) or a public-read bucket policy.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: SecretStr | None,
        secret_key: SecretStr | None,
        public_base_url: str | None,
    ) -> None:
        """Create the store and its client; nothing is sent over the network yet.

        Args:
            bucket: Bucket name.
            endpoint_url: S3 API URL for R2, MinIO and other non-AWS services; None for AWS.
            region: Signing region, e.g. `eu-west-1`; R2 uses `auto`, which needs `endpoint_url`.
            access_key: Access key id; None (with `secret_key` None) uses boto3's default
                credential chain (environment, instance or task role).
            secret_key: Secret access key.
            public_base_url: Base URL of the CDN or public domain serving the bucket's objects.

        Raises:
            StorageMisconfigured: the region or credentials cannot work.
        """
        if endpoint_url is None and region == "auto":
            raise StorageMisconfigured(
                "S3 region 'auto' only works with an endpoint URL (Cloudflare R2); "
                "set S3_REGION to the bucket's AWS region or S3_URL to the service's endpoint"
            )
        # An empty secret (an empty environment variable) counts as unset.
        if bool(access_key) != bool(secret_key):
            raise StorageMisconfigured(
                "set both S3_ACCESS_KEY and S3_SECRET_KEY, or neither to use the default AWS "
                "credential chain"
            )
        self._bucket = bucket
        self._region = region
        self._secrets = tuple(s for s in (access_key, secret_key) if s)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_CHUNK_BYTES,
            multipart_chunksize=MULTIPART_CHUNK_BYTES,
            max_concurrency=_TRANSFER_CONCURRENCY,
        )

        # Temporal retries the activity, but retrying one failed part inside a multipart upload
        # is far cheaper than re-uploading the whole video, so boto3 keeps its standard retries.
        config = Config(signature_version="s3v4", retries={"mode": "standard"})
        if endpoint_url:
            endpoint_url = endpoint_url.rstrip("/")
            config = config.merge(
                Config(
                    # Custom endpoints (MinIO, moto, an R2 account URL) rarely have DNS for
                    # bucket subdomains; every S3-compatible service understands path style.
                    s3={"addressing_style": "path"},
                    # boto3 >= 1.36 adds CRC checksums (aws-chunked trailers) to every upload,
                    # which several S3-compatible services reject (boto/boto3#4392).
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
            )
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key.get_secret_value() if access_key else None,
            aws_secret_access_key=secret_key.get_secret_value() if secret_key else None,
            config=config,
        )

        if public_base_url:
            self._url_base = public_base_url.rstrip("/")
        elif endpoint_url:
            self._url_base = f"{endpoint_url}/{bucket}"
        elif "." in bucket:
            # A dotted bucket name as a subdomain breaks TLS: the certificate is for
            # *.s3.<region>.amazonaws.com, which matches one label only.
            self._url_base = f"https://s3.{region}.amazonaws.com/{bucket}"
        else:
            self._url_base = f"https://{bucket}.s3.{region}.amazonaws.com"

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    def public_url(self, key: str) -> str:
        """The object's URL: under the CDN base when set, else the bucket's own URL.

        The bucket's URL is path-style (`{endpoint}/{bucket}/{key}`) on a custom endpoint, and
        virtual-hosted (`https://{bucket}.s3.{region}.amazonaws.com/{key}`) on AWS.
        """
        return f"{self._url_base}/{validate_key(key)}"

    def key_for(self, url: str) -> str | None:
        """The key of a URL `public_url` returns (CDN or bucket URL); None for any other URL."""
        return key_under(self._url_base, url)

    async def put_file(
        self, *, key: str, path: Path, content_type: str, consume: bool = False
    ) -> str:
        """Upload `path` (multipart above `MULTIPART_CHUNK_BYTES`) and return the public URL.

        `consume` changes nothing: an upload is a copy whatever the caller does with `path`.
        """
        validate_key(key)
        try:
            await asyncio.to_thread(
                self._client.upload_file,
                Filename=str(path),
                Bucket=self._bucket,
                Key=key,
                ExtraArgs={"ContentType": content_type},
                Config=self._transfer,
            )
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise self._error(exc, action="upload", key=key) from exc
        logger.debug("Uploaded %s to bucket %s", key, self._bucket)
        return self.public_url(key)

    async def exists(self, key: str) -> bool:
        """Whether the object exists; also False when the bucket itself is missing."""
        validate_key(key)
        try:
            await asyncio.to_thread(self._client.head_object, Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return False
            raise self._error(exc, action="lookup", key=key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, action="lookup", key=key) from exc
        return True

    async def delete(self, key: str) -> None:
        """Delete the object; S3 itself treats a missing key as success."""
        validate_key(key)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="delete", key=key) from exc

    async def download_to(self, *, key: str, path: Path) -> None:
        """Download the object to `path`; boto3 writes a temp file and renames it into place."""
        validate_key(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(
                self._client.download_file,
                Bucket=self._bucket,
                Key=key,
                Filename=str(path),
                Config=self._transfer,
            )
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise self._error(exc, action="download", key=key) from exc

    async def check(self) -> None:
        """HeadBucket: proves the endpoint answers, the bucket exists and the keys may use it."""
        try:
            await asyncio.to_thread(self._client.head_bucket, Bucket=self._bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="bucket check") from exc

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for development and tests)."""
        try:
            await asyncio.to_thread(self._ensure_bucket_sync)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="bucket creation") from exc

    def _ensure_bucket_sync(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise
        try:
            if self._region in _DEFAULT_LOCATION_REGIONS:
                self._client.create_bucket(Bucket=self._bucket)
            else:
                location = cast("BucketLocationConstraintType", self._region)
                self._client.create_bucket(
                    Bucket=self._bucket,
                    CreateBucketConfiguration={"LocationConstraint": location},
                )
        except ClientError as exc:
            # Another process won the race to create it.
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise
        logger.info("Created bucket %s", self._bucket)

    def _error(self, exc: Exception, *, action: str, key: str | None = None) -> StorageError:
        """Translate a boto error into a `StorageError` whose message holds no credentials."""
        target = f"s3://{self._bucket}/{key}" if key else f"bucket {self._bucket!r}"
        # boto3's transfer helpers wrap the error that says what actually went wrong.
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__
        elif isinstance(exc, RetriesExceededError):
            # The underlying network error stays in the exception chain.
            return StorageUnavailable(f"S3 {action} of {target} gave up after retries")

        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            server_message = exc.response.get("Error", {}).get("Message", "")
            message = self._redact(
                f"S3 {action} of {target} failed: {code} (HTTP {status})"
                + (f": {server_message}" if server_message else "")
            )
            if code == "NoSuchBucket" or (key is None and code in _NOT_FOUND_CODES):
                return StorageMisconfigured(
                    f"S3 {action} failed: bucket {self._bucket!r} does not exist"
                )
            if code in _WRONG_REGION_CODES:
                return StorageMisconfigured(
                    f"{message}; is S3_REGION ({self._region}) the bucket's region?"
                )
            if code in _NOT_FOUND_CODES:
                return ObjectNotFound(message)
            if status in (401, 403) or code in _ACCESS_CODES:
                return StorageMisconfigured(
                    f"{message}; check S3_ACCESS_KEY, S3_SECRET_KEY and the bucket's policy"
                )
            if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
                return StorageUnavailable(message)
            return StorageError(message)

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageMisconfigured(
                "no usable S3 credentials: set S3_ACCESS_KEY and S3_SECRET_KEY"
            )
        message = self._redact(f"S3 {action} of {target} failed: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageUnavailable(message)
        return StorageError(message)

    def _redact(self, text: str) -> str:
        # Belt and braces: S3 never echoes a secret key, but S3-compatible servers are many.
        for secret in self._secrets:
            text = text.replace(secret.get_secret_value(), "***")
        return text


def _code(exc: ClientError) -> str:
    """The S3 error code; a HEAD response has no body, so its code is the HTTP status."""
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
