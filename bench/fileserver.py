"""A static file server standing in for a provider's CDN: `python -m bench.fileserver DIR PORT`.

`GET /<name>/anything…` answers the file `DIR/<name>.mp4` (as `video/mp4`, with its length,
sent with sendfile), whatever follows the name. The benchmark points the emulator's `public_url`
at `http://127.0.0.1:PORT/<name>`, so the emulator's output URLs
(`<public_url>/replicate/delivery/<id>/output.mp4`) fetch that payload: the emulator keeps
rendering its small clip, and the download is of the big file.
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["serve"]


def serve(directory: Path, port: int) -> None:
    """Serve `directory` on 127.0.0.1:`port` until killed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _file(self) -> Path | None:
            name = self.path.lstrip("/").split("/", 1)[0]
            if not name or "." in name:
                return None
            path = directory / f"{name}.mp4"
            return path if path.is_file() else None

        def _head(self, path: Path | None) -> bool:
            if path is None:
                self.send_response(HTTPStatus.NOT_FOUND)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            return True

        def do_HEAD(self) -> None:  # noqa: N802 (the http.server naming)
            self._head(self._file())

        def do_GET(self) -> None:  # noqa: N802
            path = self._file()
            if self._head(path):
                assert path is not None
                with path.open("rb") as file:
                    self.connection.sendfile(file)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: one line per request would only cost time."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
