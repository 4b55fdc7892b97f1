from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pawstream.schemas import DeadLetterReason, EventError
from pawstream.vision.artifact import InputConfig, read_meta
from pawstream.vision.decode import load_rgb, sniff_content_type
from pawstream.vision.models import build_model
from pawstream.vision.predictor import Predictor
from pawstream.vision.transforms import create_transform, image_to_tensor
from tests.support.images import jpeg_bytes


@pytest.fixture(scope="module")
def predictor(tiny_artifact: Path) -> Predictor:
    return Predictor.from_artifact(tiny_artifact, threads=2, max_pixels=4_000_000)


def png_bytes(size: tuple[int, int], color: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_build_model_gives_512d_embeddings_for_resnet18() -> None:
    model = build_model("resnet18", 3).eval()
    with torch.inference_mode():
        emb = model.embed(torch.randn(2, 3, 64, 64))
        assert emb.shape == (2, 512)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg", 2)


def test_predictor_probabilities_and_embeddings(predictor: Predictor) -> None:
    batch = torch.stack([predictor.preprocess(jpeg_bytes(i)) for i in range(5)])
    assert batch.shape == (5, 3, 64, 64)
    out = predictor.predict(batch)
    assert out.probs.shape == (5, 2) and out.embeddings.shape == (5, 512)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert predictor.labels == ["cat", "dog"]


def test_predictor_is_deterministic_and_batch_independent(predictor: Predictor) -> None:
    x = torch.stack([predictor.preprocess(jpeg_bytes(i)) for i in range(4)])
    together = predictor.predict(x).probs
    alone = np.concatenate([predictor.predict(x[i : i + 1]).probs for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_artifact_records_input_config_and_labels(tiny_artifact: Path) -> None:
    meta = read_meta(tiny_artifact)
    assert meta.input.size == 64 and meta.input.resize == 72
    assert meta.labels == ["cat", "dog"] and meta.arch == "resnet18" and meta.embedding_dim == 512


def test_eval_transform_is_deterministic_and_training_one_augments() -> None:
    cfg = InputConfig(size=64, resize=72)
    data = jpeg_bytes(3, (300, 200))
    ev = create_transform(cfg, is_training=False)
    a = image_to_tensor(data, cfg, ev, max_pixels=10**7)
    b = image_to_tensor(data, cfg, ev, max_pixels=10**7)
    assert torch.equal(a, b) and a.shape == (3, 64, 64)
    tr = create_transform(cfg, is_training=True)
    torch.manual_seed(0)
    c = image_to_tensor(data, cfg, tr, max_pixels=10**7)
    assert c.shape == a.shape and not torch.equal(a, c)


def test_serving_preprocess_equals_the_shared_transform_path(predictor: Predictor) -> None:
    """Serving (Predictor.preprocess) and training (create_transform + image_to_tensor) agree."""
    cfg = predictor.meta.input
    data = jpeg_bytes(11, (640, 480))
    training_side = image_to_tensor(data, cfg, create_transform(cfg, is_training=False), max_pixels=10**7)
    assert torch.equal(predictor.preprocess(data), training_side)


def test_jpeg_draft_mode_keeps_the_short_side_above_resize() -> None:
    img = load_rgb(jpeg_bytes(5, (1600, 1200)), draft_size=256, max_pixels=10**8)
    assert min(img.size) >= 256 and img.size[0] < 1600  # decoded at a reduced scale


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DeadLetterReason.DECODE),
        (b"hello world, not an image", DeadLetterReason.DECODE),
        (jpeg_bytes(1)[:200], DeadLetterReason.DECODE),  # truncated
        (png_bytes((5000, 5000)), DeadLetterReason.TOO_LARGE),  # 25 Mpx PNG bomb, a few KB on disk
        (b"%PDF-1.4 not an image", DeadLetterReason.DECODE),
    ],
)
def test_bad_images_raise_event_errors(predictor: Predictor, data: bytes, reason: DeadLetterReason) -> None:
    with pytest.raises(EventError) as info:
        predictor.preprocess(data)
    assert info.value.reason is reason


def test_sniff_content_type_uses_magic_bytes() -> None:
    assert sniff_content_type(jpeg_bytes(0)) == "image/jpeg"
    assert sniff_content_type(png_bytes((4, 4))) == "image/png"
    assert sniff_content_type(b"GIF89a....") == "image/gif"
    assert sniff_content_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_content_type(b"<svg></svg>") is None


def test_predict_bytes_isolates_bad_items(predictor: Predictor) -> None:
    results = predictor.predict_bytes([jpeg_bytes(1), b"junk", jpeg_bytes(2)])
    assert isinstance(results[1], EventError)
    assert not isinstance(results[0], EventError) and not isinstance(results[2], EventError)
