"""prepare (validation, rejects, stratified seeded split, data hash) and the train/serve parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pawstream.vision.artifact import read_meta
from pawstream.vision.models import DEFAULT_INPUT
from pawstream.vision.predictor import Predictor
from tests.support.images import jpeg_bytes, real_photos
from tests.support.training import make_source
from training import prepare
from training.data import DataChangedError, ImageBytesDataset, Item, read_manifest, read_summary, sha256_hex
from training.params import PrepareParams

MAX_PIXELS = 40_000_000


def test_prepare_rejects_with_reasons_and_splits_stratified(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    (src / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "cat" / "tiny.jpg").write_bytes(jpeg_bytes(1000, (12, 12)))
    (src / "cat" / "copy.jpg").write_bytes((src / "cat" / "000.jpg").read_bytes())
    (src / "cat" / "notes.txt").write_text("not an image")
    params = PrepareParams(source=src, val_fraction=0.2, test_fraction=0.2, min_side=32)
    out = tmp_path / "prepared"
    summary = prepare.run(params, out)
    assert summary.rejected == {"duplicate": 1, "extension": 1, "not_an_image": 1, "too_small": 1}
    assert summary.counts == {
        "train": {"cat": 12, "dog": 12},
        "val": {"cat": 4, "dog": 4},
        "test": {"cat": 4, "dog": 4},
    }
    splits = {s: read_manifest(s, out) for s in ("train", "val", "test")}
    paths = [i.relpath for items in splits.values() for i in items]
    assert len(paths) == len(set(paths)) == 40
    assert all(sha256_hex((src / i.relpath).read_bytes()) == i.sha256 for i in splits["test"])
    assert read_summary(out).data_hash == summary.data_hash

    again = prepare.run(params, tmp_path / "again")  # same seed, same split and hash
    assert read_manifest("test", tmp_path / "again") == splits["test"]
    assert again.data_hash == summary.data_hash
    reseeded = prepare.run(params.model_copy(update={"seed": 7}), tmp_path / "reseeded")
    assert read_manifest("test", tmp_path / "reseeded") != splits["test"]
    assert reseeded.data_hash == summary.data_hash  # same photos, same dataset version

    (src / "dog" / "001.jpg").write_bytes(jpeg_bytes(5000, (64, 48)))
    assert prepare.run(params, tmp_path / "changed").data_hash != summary.data_hash


def _items(tmp_path: Path) -> tuple[Path, list[Item]]:
    root = tmp_path / "photos"
    blobs = [p.read_bytes() for p in real_photos(4)] or [jpeg_bytes(i, (300, 200)) for i in range(4)]
    items = []
    for i, data in enumerate(blobs):
        label = ("cat", "dog")[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i}.jpg").write_bytes(data)
        items.append(Item(f"{label}/{i}.jpg", label, sha256_hex(data), 0, 0, len(data)))
    return root, items


def test_training_items_equal_serving_preprocess(tmp_path: Path, tiny_artifact: Path) -> None:
    """Eval-mode dataset items are bit-identical to what the worker's Predictor feeds the model."""
    root, items = _items(tmp_path)
    meta = read_meta(tiny_artifact)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS, warmup=False)
    ds = ImageBytesDataset(root, items, meta.labels, meta.input, is_training=False, max_pixels=MAX_PIXELS)
    for i, item in enumerate(items):
        tensor, label = ds[i]
        assert torch.equal(tensor, predictor.preprocess((root / item.relpath).read_bytes()))
        assert meta.labels[label] == item.label

    augmented = ImageBytesDataset(
        root, items, meta.labels, meta.input, is_training=True, max_pixels=MAX_PIXELS
    )
    torch.manual_seed(0)
    views = [augmented[0][0] for _ in range(3)]
    assert views[0].shape == ds[0][0].shape
    assert not all(torch.equal(v, ds[0][0]) for v in views)  # augmentation only in training mode


def test_changed_photo_fails_loudly(tmp_path: Path, tiny_artifact: Path) -> None:
    root, items = _items(tmp_path)
    meta = read_meta(tiny_artifact)
    ds = ImageBytesDataset(root, items, meta.labels, meta.input, is_training=False, max_pixels=MAX_PIXELS)
    (root / items[0].relpath).write_bytes(jpeg_bytes(99))
    with pytest.raises(DataChangedError, match="sha256"):
        ds[0]


def test_extra_data_goes_to_train_and_val_only_and_is_a_new_data_version(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    base = PrepareParams(source=src, val_fraction=0.2, test_fraction=0.2, min_side=32)
    without = prepare.run(base, tmp_path / "without")
    extra = tmp_path / "feedback"
    for i in range(10):
        label = "cat" if i % 2 else "dog"
        (extra / label).mkdir(parents=True, exist_ok=True)
        (extra / label / f"{i}.jpg").write_bytes(jpeg_bytes(3000 + i, (80, 60)))
    (extra / "cat" / "again.jpg").write_bytes((src / "dog" / "001.jpg").read_bytes())  # a source image
    (extra / "bird").mkdir()
    (extra / "bird" / "b.jpg").write_bytes(jpeg_bytes(4000, (80, 60)))
    (extra / "manifest.csv").write_text("id,label\n")  # files beside the <label>/ folders are not images
    out = tmp_path / "with"
    summary = prepare.run(base.model_copy(update={"extra_data": extra}), out)
    assert read_manifest("test", out) == read_manifest("test", tmp_path / "without")  # the fixed test split
    assert summary.counts["test"] == without.counts["test"]
    assert summary.extra_counts == {"train": {"cat": 4, "dog": 4}, "val": {"cat": 1, "dog": 1}}
    assert summary.rejected == {"duplicate": 1, "label": 1}
    assert summary.data_hash != without.data_hash
    added = [
        i for s in ("train", "val") for i in read_manifest(s, out) if i.relpath.startswith("extra_data:")
    ]
    assert len(added) == 10
    # The dataset reads an extra item from prepare.extra_data, checked against its sha256.
    roots = read_summary(out).roots()
    ds = ImageBytesDataset(
        roots, added, ["cat", "dog"], DEFAULT_INPUT["resnet18"], is_training=False, max_pixels=MAX_PIXELS
    )
    assert sha256_hex(ds.read_bytes(0)) == added[0].sha256
