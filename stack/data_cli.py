"""The body of `pawstream data fetch`: download (or take a folder), check, unpack, report."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rich.console import Console

from pawstream.settings import Settings
from stack.data_fetch import (
    DEFAULT_URL,
    DataFetchError,
    archive_name,
    check_archive,
    download,
    expected_for,
    remove_archive,
    training_photos,
)
from stack.data_import import MANIFEST, check_dest, import_photos

logger = logging.getLogger(__name__)

# Downloads wait here (git-ignored, beside the other run state) until they are unpacked.
DOWNLOADS = Path("var/downloads")


def run_data_fetch(
    settings: Settings,
    dest: Path | None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    from_folder: Path | None = None,
    keep_archive: bool = False,
    console: Console | None = None,
) -> int:
    """0 when ``dest`` holds checked <label>/ photos and a MANIFEST; else a one-line error and 1."""
    console = console or Console(stderr=True)
    dest = dest or training_photos()
    max_pixels = settings.refs.max_image_pixels
    try:
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise DataFetchError(f"--sha256 {sha256!r}: expected 64 hex digits")
        if from_folder is not None:
            if url is not None:
                raise DataFetchError("give either --url or --from-folder, not both")
            if not from_folder.is_dir():
                raise DataFetchError(f"--from-folder {from_folder}: no such folder")
            report = import_photos(from_folder, dest, max_pixels=max_pixels, console=console)
        else:
            url = url or DEFAULT_URL
            check_dest(dest)  # before an 800 MB download, not after it
            archive = download(url, DOWNLOADS / archive_name(url), console)
            check_archive(archive, expected_for(url, sha256), console)
            report = import_photos(archive, dest, max_pixels=max_pixels, console=console)
            if not keep_archive:
                remove_archive(archive)
    except DataFetchError as exc:
        console.print(f"data fetch failed: {exc}", style="red", soft_wrap=True, highlight=False, markup=False)
        return 1
    console.print(report.line(dest), soft_wrap=True, highlight=False, markup=False)
    console.print(
        f"manifest: {dest / MANIFEST}; next: `make demo` (or `make train`)", soft_wrap=True, markup=False
    )
    return 0
