"""Files "generated" by emulated jobs, shared by every provider module."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputStore"]


class OutputStore:
    """Output files kept in a temporary directory for the life of the app.

    Files are laid out as `<provider>/<job id>/<file name>`; provider modules map their own URL
    scheme onto that (`JobBackend.output_response` serves a file).
    """

    def __init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="reelflow-emulator-"))

    def path(self, *, provider: str, job_id: str, filename: str) -> Path:
        """Where the output `filename` of a job lives; its directory is created.

        Raises:
            ValueError: a part is not a plain file name, so it could escape the store.
        """
        for part in (provider, job_id, filename):
            if not part or part in {".", ".."} or "/" in part or "\\" in part:
                raise ValueError(f"not a plain path segment: {part!r}")
        directory = self._root / provider / job_id
        directory.mkdir(parents=True, exist_ok=True)
        return directory / filename

    def clear(self) -> None:
        """Delete every output file."""
        for child in self._root.iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        """Delete the store's directory."""
        shutil.rmtree(self._root, ignore_errors=True)
