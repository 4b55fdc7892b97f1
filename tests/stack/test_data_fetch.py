"""`pawstream data fetch` on a small archive of the Kaggle release's layout: from a file:// URL and
from a real local HTTP server (resuming a truncated download), checksums, dropped photos, the
MANIFEST, --from-folder, and one-line errors."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pawstream.settings import Settings
from stack.cli import app
from stack.data_cli import DOWNLOADS, run_data_fetch
from stack.data_fetch import DEFAULT_SIZE, DEFAULT_URL, expected_for
from stack.data_import import MANIFEST_FIELDS, label_of
from tests.support.pet_archive import RangeServer, pet_archive, pet_photo

PER_LABEL = 6


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own: downloads go to ./var/downloads, as from the repo root."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return pet_archive(tmp_path / "served" / "kagglecatsanddogs_5340.zip", PER_LABEL)


def fetch(dest: Path, **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=200)
    code = run_data_fetch(Settings(), dest, console=console, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(dest: Path) -> list[dict[str, str]]:
    with (dest / "MANIFEST.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def assert_imported(dest: Path, output: str) -> None:
    rows = manifest(dest)
    assert list(rows[0]) == MANIFEST_FIELDS
    assert sorted(p.name for p in dest.iterdir()) == ["MANIFEST.csv", "cat", "dog"]
    assert {r["label"] for r in rows} == {"cat", "dog"} and len(rows) == 2 * PER_LABEL
    for row in rows:
        assert sha256(dest / row["relpath"]) == row["sha256"]
        assert row["relpath"] == f"{row['label']}/{row['sha256'][:16]}.jpg"
        assert (row["width"], row["height"]) == ("96", "80")
        assert row["source_path"].startswith(f"PetImages/{row['label'].title()}/")
    assert f"kept {2 * PER_LABEL} photos (cat {PER_LABEL}, dog {PER_LABEL})" in output
    assert "dropped 2 unreadable or empty (" in output and "empty 1" in output


def test_file_url_with_the_right_checksum(workdir: Path, archive: Path) -> None:
    dest = workdir / "photos"
    code, out = fetch(dest, url=archive.as_uri(), sha256=sha256(archive))
    assert code == 0, out
    assert_imported(dest, out)
    assert "sha256 ok" in out
    assert not (workdir / DOWNLOADS).exists()  # the archive is removed once unpacked


def test_checksum_mismatch_refuses_and_removes_the_download(workdir: Path, archive: Path) -> None:
    dest = workdir / "photos"
    code, out = fetch(dest, url=archive.as_uri(), sha256="0" * 64)
    assert code == 1
    assert "sha256 mismatch" in out and f"got {sha256(archive)}" in out
    assert not dest.exists()
    assert not (workdir / DOWNLOADS / archive.name).exists()


def test_a_url_without_a_known_checksum_prints_the_computed_one(workdir: Path, archive: Path) -> None:
    code, out = fetch(workdir / "photos", url=archive.as_uri(), keep_archive=True)
    assert code == 0, out
    assert f"pass --sha256 {sha256(archive)}" in out
    assert (workdir / DOWNLOADS / archive.name).is_file()


def test_the_default_url_is_checked_by_its_pinned_size() -> None:
    assert expected_for(DEFAULT_URL, None).size == DEFAULT_SIZE
    assert expected_for(DEFAULT_URL, "AB" * 32).sha256 == "ab" * 32


def test_http_download_resumes_a_truncated_part(workdir: Path, archive: Path) -> None:
    data = archive.read_bytes()
    part = workdir / DOWNLOADS / (archive.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 3])  # an earlier run died a third of the way in
    dest = workdir / "photos"
    with RangeServer(archive.parent) as server:
        code, out = fetch(dest, url=server.url(archive.name), sha256=sha256(archive))
        ranges = server.ranges
    assert code == 0, out
    assert ranges == [f"bytes={len(data) // 3}-"]
    assert "resuming at" in out
    assert_imported(dest, out)
    assert not part.exists()


def test_a_dropped_connection_is_resumed_by_running_again(workdir: Path, archive: Path) -> None:
    dest = workdir / "photos"
    part = workdir / DOWNLOADS / (archive.name + ".part")
    with RangeServer(archive.parent, cut_after=[20_000]) as server:
        code, out = fetch(dest, url=server.url(archive.name), sha256=sha256(archive))
        assert code == 1 and "run the same command again to resume" in out, out
        assert part.stat().st_size == 20_000 and not dest.exists()
        code, out = fetch(dest, url=server.url(archive.name), sha256=sha256(archive))
        assert server.ranges == [None, "bytes=20000-"]
    assert code == 0, out
    assert_imported(dest, out)


def test_a_damaged_archive_member_is_dropped(workdir: Path, archive: Path) -> None:
    data = bytearray(archive.read_bytes())
    photo = pet_photo("cat", 2)
    at = data.find(photo) + len(photo) // 2  # stored uncompressed: flip a byte, break its CRC
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    code, out = fetch(workdir / "photos", url=archive.as_uri())
    assert code == 0, out
    assert f"kept {2 * PER_LABEL - 1} photos" in out and "unreadable 1" in out


def test_something_else_than_an_archive_is_refused(workdir: Path, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("<html>sign in to continue</html>")
    code, out = fetch(workdir / "photos", url=page.as_uri())
    assert code == 1 and "neither a zip nor a tar archive" in out
    assert not (workdir / "photos").exists()


def test_http_download_from_the_start(workdir: Path, archive: Path) -> None:
    with RangeServer(archive.parent) as server:
        code, out = fetch(workdir / "photos", url=server.url(archive.name), sha256=sha256(archive))
        missing, missing_out = fetch(workdir / "other", url=server.url("nope.zip"))
        assert server.ranges == [None, None]
    assert code == 0, out
    assert_imported(workdir / "photos", out)
    assert missing == 1 and "HTTP 404" in missing_out


def test_tar_archives_work_too(workdir: Path, tmp_path: Path) -> None:
    tgz = tmp_path / "pets.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for label in ("Cat", "Dog"):
            for i in range(3):
                data = pet_photo(label.lower(), i)
                info = tarfile.TarInfo(f"PetImages/{label}/{i}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    code, out = fetch(workdir / "photos", url=tgz.as_uri())
    assert code == 0, out
    assert len(manifest(workdir / "photos")) == 6


def test_from_folder_in_either_layout(workdir: Path, tmp_path: Path) -> None:
    own = tmp_path / "mine"
    for label in ("cat", "dog"):
        (own / label).mkdir(parents=True)
        for i in range(PER_LABEL):
            (own / label / f"{label}{i}.jpg").write_bytes(pet_photo(label, i))
    (own / "cat" / "copy.jpg").write_bytes(pet_photo("cat", 0))  # an exact duplicate
    (own / "dog" / "empty.jpg").write_bytes(b"")
    code, out = fetch(workdir / "photos", from_folder=own)
    assert code == 0, out
    assert len(manifest(workdir / "photos")) == 2 * PER_LABEL
    assert "dropped 1 unreadable or empty (empty 1)" in out and "1 exact duplicates merged" in out
    assert (own / "cat" / "copy.jpg").is_file()  # the source is left as it was

    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(pet_archive(tmp_path / "a.zip", PER_LABEL), unpacked)
    code, out = fetch(workdir / "photos2", from_folder=unpacked)
    assert code == 0, out
    assert_imported(workdir / "photos2", out)


def test_a_non_empty_destination_is_left_alone(workdir: Path, archive: Path) -> None:
    dest = workdir / "photos"
    (dest / "cat").mkdir(parents=True)
    code, out = fetch(dest, url=archive.as_uri())
    assert code == 1 and "already exists and is not empty" in out
    assert not (workdir / DOWNLOADS).exists()  # refused before downloading anything


def test_a_destination_inside_the_source_folder_is_not_read_back(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    for label in ("cat", "dog"):
        (own / label).mkdir(parents=True)
        (own / label / "a.jpg").write_bytes(pet_photo(label, 0))
    code, out = fetch(own / "clean", from_folder=own)
    assert code == 0, out
    assert "kept 2 photos (cat 1, dog 1)" in out
    assert sorted(p.name for p in own.iterdir()) == ["cat", "clean", "dog"]
    code, out = fetch(own / "cat" / "a.jpg", from_folder=own)  # a file is not a destination
    assert code == 1 and "already exists" in out


def test_labels_come_from_the_folder_a_photo_is_in() -> None:
    from pathlib import PurePosixPath as P

    assert label_of(P("PetImages/Cat/1.jpg")) == "cat"
    assert label_of(P("dog/x.JPG")) == "dog"
    assert label_of(P("PetImages/Cat/Thumbs.db")) is None
    assert label_of(P("PetImages/1.jpg")) is None
    assert label_of(P("1.jpg")) is None
    assert label_of(P(".git/cat/1.jpg")) is None and label_of(P("cat/._1.jpg")) is None


def test_the_command_line_gives_one_line_errors(workdir: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "fetch", str(workdir / "p"), "--url", "ftp://example.org/x.zip"]
    )
    assert result.exit_code == 1
    assert "unsupported URL scheme 'ftp'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["data", "fetch", "--from-folder", str(workdir / "absent")])
    assert result.exit_code == 1 and "no such folder" in result.output
    result = CliRunner().invoke(app, ["data", "fetch", str(workdir / "p"), "--sha256", "abc"])
    assert result.exit_code == 1 and "--sha256 'abc': expected 64 hex digits" in result.output
    assert not (workdir / DOWNLOADS).exists()  # checked before downloading
