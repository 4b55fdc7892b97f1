"""Unpack photos into the ``<label>/`` layout training reads, dropping unusable ones, with a MANIFEST.

Sources: a zip or tar archive, or a folder, laid out as ``<label>/`` folders or the Kaggle
release's ``PetImages/Cat``, ``PetImages/Dog``: a photo's label is the name of the folder it is in,
lower-cased (``Cat`` -> ``cat``, the model's label names). Each photo is decoded with the
serving decoder (pawstream.vision.decode.load_rgb) under the same pixel limits; empty files,
non-images and corrupt ones are dropped and counted. Files are named by their content
(``<sha256[:16]><ext>``, as in the shared set), so exact duplicates collapse into one.

Nothing is extracted as given: every output path is built here from the label and the hash, so a
hostile archive's ``../`` names cannot write outside the destination.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import shutil
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pawstream.schemas import EventError
from pawstream.vision.decode import ALLOWED_FORMATS, load_rgb
from pawstream.vision.files import IMAGE_SUFFIXES
from stack.data_fetch import DataFetchError

MANIFEST = "MANIFEST.csv"
# The columns of training's split manifests (training/data.py Item) plus where each photo came from.
MANIFEST_FIELDS = ["relpath", "label", "sha256", "width", "height", "bytes", "source_path"]
# Larger files are dropped unread (prepare.max_bytes in params.yaml; a zip bomb stops here).
MAX_BYTES = 20 * 1024 * 1024
# Decode at about the size training uses: draft mode makes a full check of 25,000 JPEGs quick.
_DRAFT = 256
# Folders that hold the label folders rather than being labels themselves.
_CONTAINERS = {"petimages"}


@dataclass(frozen=True)
class Member:
    """One candidate photo: where it came from, its label, its size and how to read it."""

    source_path: str
    label: str
    size: int
    read: Callable[[], bytes]


@dataclass
class ImportReport:
    kept: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    def line(self, dest: Path) -> str:
        kept = ", ".join(f"{label} {n}" for label, n in sorted(self.kept.items()))
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{kind} {n}" for kind, n in sorted(self.dropped.items()))
        text = (
            f"kept {sum(self.kept.values())} photos ({kept}) in {dest}; dropped {dropped} unreadable or empty"
        )
        if dropped:
            text += f" ({reasons})"
        if self.duplicates:
            text += f"; {self.duplicates} exact duplicates merged"
        return text


def label_of(path: PurePosixPath) -> str | None:
    """The label of a photo at ``path`` inside a source, or None when it is not a labelled photo."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    # Hidden anywhere (.git, macOS's ._ files, this module's own .<dest>.importing folder) is skipped.
    if any(p.startswith(".") for p in parts):
        return None
    parents = parts[:-1]
    if not parents or parents[-1].lower() in _CONTAINERS:
        return None
    return parents[-1].lower()


def zip_members(archive: Path) -> Iterator[Member]:
    zf = zipfile.ZipFile(archive)
    with zf:
        for info in zf.infolist():
            label = None if info.is_dir() else label_of(PurePosixPath(info.filename))
            if label:
                yield Member(info.filename, label, info.file_size, functools.partial(zf.read, info))


def tar_members(archive: Path) -> Iterator[Member]:
    with tarfile.open(archive) as tf:
        for info in tf:
            label = label_of(PurePosixPath(info.name)) if info.isfile() else None
            if label:
                yield Member(info.name, label, info.size, functools.partial(_tar_read, tf, info))


def _tar_read(tf: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(info)
    return fh.read() if fh else b""


def folder_members(folder: Path) -> Iterator[Member]:
    for path in sorted(folder.rglob("*")):
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        label = label_of(rel) if path.is_file() else None
        if label:
            yield Member(str(rel), label, path.stat().st_size, path.read_bytes)


def members_of(source: Path) -> Iterator[Member]:
    if source.is_dir():
        return folder_members(source)
    if zipfile.is_zipfile(source):
        return zip_members(source)
    if tarfile.is_tarfile(source):
        return tar_members(source)
    raise DataFetchError(f"{source} is neither a zip nor a tar archive nor a folder")


def check_photo(data: bytes, max_pixels: int) -> tuple[int, int] | str:
    """(width, height) of a usable photo, or why it is dropped (empty, not_an_image, decode, ...)."""
    if not data:
        return "empty"
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return "not_an_image"
    try:
        load_rgb(data, draft_size=_DRAFT, max_pixels=max_pixels)
    except EventError as exc:
        return exc.reason.value
    return width, height


def check_dest(dest: Path) -> None:
    """Refuse a destination that holds anything: fetching never overwrites or merges photos."""
    if dest.is_file() or (dest.is_dir() and any(dest.iterdir())):
        raise DataFetchError(f"{dest} already exists and is not empty: remove it or give another DEST")


def import_photos(source: Path, dest: Path, *, max_pixels: int, console: Console) -> ImportReport:
    """Photos of ``source`` into ``dest``/<label>/ with ``dest``/MANIFEST.csv.

    Written to a hidden sibling folder first and renamed at the end, so ``dest`` either does not
    exist or is complete: an interrupted run never leaves half a dataset for training to hash.
    """
    check_dest(dest)
    staging = dest.with_name(f".{dest.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report = ImportReport()
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"checking photos from {source.name}", total=None)
            try:
                for member in members_of(source):
                    bar.advance(task)
                    row = _import_one(member, staging, max_pixels, seen, report)
                    if row:
                        rows.append(row)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                raise DataFetchError(f"{source} is damaged ({exc}): remove it and fetch it again") from exc
        if not rows:
            raise DataFetchError(
                f"no usable photos in {source}: expected <label>/ folders (or PetImages/Cat, PetImages/Dog) "
                "of JPEG, PNG, WebP, GIF or BMP files"
            )
        _write_manifest(staging / MANIFEST, rows)
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _import_one(
    member: Member, staging: Path, max_pixels: int, seen: set[str], report: ImportReport
) -> dict[str, object] | None:
    if member.size > MAX_BYTES:
        report.dropped["too_large"] += 1
        return None
    try:
        data = member.read()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError):
        # One damaged member (a bad CRC, a truncated stream), an encrypted one (RuntimeError) or one
        # compressed with an unsupported method (NotImplementedError) costs that photo, not the run.
        report.dropped["unreadable"] += 1
        return None
    checked = check_photo(data, max_pixels)
    if isinstance(checked, str):
        report.dropped[checked] += 1
        return None
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        report.duplicates += 1
        return None
    seen.add(digest)
    suffix = PurePosixPath(member.source_path).suffix.lower()
    relpath = f"{member.label}/{digest[:16]}{suffix}"
    (staging / member.label).mkdir(exist_ok=True)
    (staging / relpath).write_bytes(data)
    report.kept[member.label] += 1
    width, height = checked
    return {
        "relpath": relpath,
        "label": member.label,
        "sha256": digest,
        "width": width,
        "height": height,
        "bytes": len(data),
        "source_path": member.source_path,
    }


def _write_manifest(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: str(r["relpath"])))
