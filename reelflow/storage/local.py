"""An object store in a local directory, which the HTTP API serves under `/files/`."""

from __future__ import annotations

import asyncio
import errno
import logging
import mimetypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from reelflow.storage.base import (
    ObjectNotFound,
    StorageError,
    StorageMisconfigured,
    key_under,
    validate_key,
)

__all__ = ["LocalStore"]

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1024 * 1024


class LocalStore:
    """Objects as files under `root`, for development and single-machine deployments.

    Writes are atomic (a temp file in the destination directory, then `os.replace`), so the file
    server never serves half a video. File I/O runs in worker threads, off the event loop.

    The content type is not stored: the file server derives it from the key's extension, so keys
    should end in the extension matching their type (`.mp4`, `.jpg`).
    """

    def __init__(self, root: Path, public_base_url: str) -> None:
        """Create a store; `root` is created on first write or `check()`.

        Args:
            root: Directory holding the objects.
            public_base_url: URL under which `root` is served, e.g. `http://127.0.0.1:3000/files`.
        """
        self._root = root
        self._public_base_url = public_base_url.rstrip("/")

    @property
    def root(self) -> Path:
        """Directory holding the objects, to be served under the public base URL."""
        return self._root

    def public_url(self, key: str) -> str:
        """`{public_base_url}/{key}`; keys need no escaping (see `validate_key`)."""
        return f"{self._public_base_url}/{validate_key(key)}"

    def key_for(self, url: str) -> str | None:
        """The key of `{public_base_url}/{key}`; None for any other URL."""
        return key_under(self._public_base_url, url)

    async def put_file(
        self, *, key: str, path: Path, content_type: str, consume: bool = False
    ) -> str:
        """Copy `path` to `root/key` atomically and return the public URL; with `consume`, move
        it there instead when it is on the same filesystem (no second write of the bytes)."""
        destination = self._path(key)
        guessed, _ = mimetypes.guess_type(key)
        if guessed != content_type:
            logger.warning(
                "Object %s is %s but its extension suggests %s; the local store keeps no content "
                "type, so it will be served by extension",
                key,
                content_type,
                guessed or "no type",
            )
        await asyncio.to_thread(self._put_sync, path, destination, consume)
        logger.debug("Stored %s in %s", key, self._root)
        return self.public_url(key)

    async def exists(self, key: str) -> bool:
        """Whether `root/key` is a file."""
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove `root/key`, if present."""
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r} from {self._root}: {exc}") from exc

    async def download_to(self, *, key: str, path: Path) -> None:
        """Copy `root/key` to `path` atomically."""
        await asyncio.to_thread(self._download_sync, key, self._path(key), path)

    async def check(self) -> None:
        """Create `root` if needed and prove it is writable with a probe file."""
        await asyncio.to_thread(self._check_sync)

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    def _put_sync(self, source: Path, destination: Path, consume: bool) -> None:
        # Opened outside the `try`: a problem with the caller's file is its OSError, not ours.
        with source.open("rb") as src:
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                if not (consume and _move_into_place(src, source, destination)):
                    _atomic_write(src, destination)
            except OSError as exc:
                raise StorageError(f"cannot write {destination}: {exc}") from exc

    def _download_sync(self, key: str, source: Path, destination: Path) -> None:
        try:
            src = source.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object {key!r} in {self._root}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {source}: {exc}") from exc
        with src:
            destination.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(src, destination)

    def _check_sync(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            # Permission bits do not tell the whole story (read-only mounts, full disks, ACLs),
            # so actually write something.
            with tempfile.TemporaryFile(dir=self._root):
                pass
        except OSError as exc:
            raise StorageMisconfigured(
                f"local storage directory {self._root} is not usable: {exc}"
            ) from exc


def _move_into_place(src: BinaryIO, source: Path, destination: Path) -> bool:
    """Rename `source` (open as `src`) to `destination`; False when they are on different
    filesystems and the bytes must be copied after all."""
    # As `_atomic_write`: published readable by whoever serves the directory, and on disk
    # before the rename makes it visible.
    os.fchmod(src.fileno(), 0o644)
    os.fsync(src.fileno())
    try:
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _atomic_write(src: BinaryIO, destination: Path) -> None:
    """Stream `src` into `destination` via a temp file in the same directory and `os.replace`."""
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
        with os.fdopen(fd, "wb") as temp:
            # mkstemp creates the file 0600; a published object must be readable by whatever
            # serves the directory, which need not be this process's user.
            os.fchmod(temp.fileno(), 0o644)
            shutil.copyfileobj(src, temp, _COPY_CHUNK)
            temp.flush()
            # Without fsync a crash soon after the rename can leave an empty file under the key.
            os.fsync(temp.fileno())
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
