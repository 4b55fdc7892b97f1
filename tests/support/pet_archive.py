"""A small stand-in for the Kaggle "Dogs vs. Cats" archive, and a real HTTP server that resumes.

The archive has the Microsoft release's layout (PetImages/Cat/N.jpg, PetImages/Dog/N.jpg, a
Thumbs.db, one empty and one corrupt JPEG) with learnable photos: cats reddish, dogs bluish, both
noisy, so a model trained on them beats chance. :class:`RangeServer` is http.server in a thread,
answering Range requests with 206 as a CDN does, and recording each request's Range header.
"""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

PER_LABEL_BROKEN = {"empty": 1, "not_an_image": 1}


def pet_photo(label: str, i: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A noisy JPEG, reddish for cats and bluish for dogs."""
    rng = np.random.default_rng(i * 2 + (label == "dog"))
    w, h = size
    base = np.array([170, 70, 60] if label == "cat" else [60, 80, 170], dtype=np.int16)
    arr = np.clip(base + rng.integers(-50, 50, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def pet_archive(path: Path, per_label: int) -> Path:
    """A zip at ``path`` like kagglecatsanddogs_5340.zip: ``per_label`` good photos of each class,
    plus Cat/666.jpg empty, Dog/11702.jpg corrupt and a Thumbs.db (as in the real archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for folder in ("Cat", "Dog"):
            for i in range(per_label):
                zf.writestr(f"PetImages/{folder}/{i}.jpg", pet_photo(folder.lower(), i))
            zf.writestr(f"PetImages/{folder}/Thumbs.db", b"\x00" * 64)
        zf.writestr("PetImages/Cat/666.jpg", b"")
        zf.writestr("PetImages/Dog/11702.jpg", b"\xff\xd8\xff\xe0 truncated in transit")
        zf.writestr("CDLA-Permissive-2.0.pdf", b"%PDF-1.4 licence text")
        zf.writestr("readme[1].txt", b"the photos")
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.ranges.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        spec = self.headers.get("Range", "")
        if spec.startswith("bytes=") and spec.endswith("-"):
            start = int(spec[len("bytes=") : -1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Type", "application/zip")
        self.end_headers()
        cut = self.server.cut_after.pop(0) if self.server.cut_after else None
        # A cut response promises every byte, sends some and closes: a dropped connection.
        self.wfile.write(data[start : None if cut is None else start + cut])


class _Server(http.server.ThreadingHTTPServer):
    ranges: list[str | None]
    cut_after: list[int]


class RangeServer:
    """Serves ``folder`` on 127.0.0.1 (a free port) until closed; ``url(name)`` is a file's URL.

    ``cut_after``: the first responses send only this many bytes each, then drop the connection.
    """

    def __init__(self, folder: Path, cut_after: list[int] | None = None) -> None:
        handler = lambda *a: _Handler(*a, directory=str(folder))  # noqa: E731
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.ranges = []
        self._server.cut_after = list(cut_after or [])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of each request so far (None: a whole-file request)."""
        return list(self._server.ranges)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"
