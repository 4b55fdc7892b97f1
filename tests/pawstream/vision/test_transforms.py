"""The eval transform against torchvision's (and Pillow's resize), and its thread behaviour."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import torch

from pawstream.vision.artifact import IMAGENET_MEAN, IMAGENET_STD, InputConfig
from pawstream.vision.decode import load_rgb
from pawstream.vision.transforms import EvalTransform, create_transform, image_to_tensor
from tests.support.images import photo
from tests.support.vision import torchvision_eval


@pytest.mark.parametrize(
    ("size", "cfg"),
    [
        ((500, 375), InputConfig()),  # landscape, ImageNet stats
        ((375, 500), InputConfig()),  # portrait
        ((256, 256), InputConfig()),  # already at the resize: no resampling
        ((100, 60), InputConfig()),  # upscaled
        ((333, 517), InputConfig(size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)),  # EfficientNet
        ((640, 480), InputConfig(size=64, resize=72, interpolation="bicubic")),
        ((301, 199), InputConfig(size=63, resize=71, mean=IMAGENET_MEAN, std=IMAGENET_STD)),  # odd sizes
    ],
)
def test_eval_transform_is_bit_identical_to_torchvision(size: tuple[int, int], cfg: InputConfig) -> None:
    img = photo(size, seed=sum(size))
    ours = create_transform(cfg, is_training=False)(img)
    reference = torchvision_eval(cfg)(img)  # type: ignore[operator]
    assert ours.dtype == torch.float32 and ours.shape == (3, cfg.size, cfg.size)
    assert ours.is_contiguous()
    assert torch.equal(ours, reference)
    # and within one grey level of Pillow's own resize (the path the artifact used to be trained on)
    pil = torchvision_eval(cfg, on_pil=True)(img)  # type: ignore[operator]
    one_level = 1 / 255 / min(cfg.std) + 1e-6
    assert float((ours - pil).abs().max()) <= one_level


def test_training_transform_augments_and_keeps_the_same_tail() -> None:
    cfg = InputConfig(size=64, resize=72)
    img = photo((300, 200), seed=1)
    torch.manual_seed(0)
    a = create_transform(cfg, is_training=True)(img)
    b = create_transform(cfg, is_training=True)(img)
    assert a.shape == b.shape == (3, 64, 64) and not torch.equal(a, b)
    # the same normalisation as eval: values live in [(0 - mean) / std, (1 - mean) / std]
    lo = (0 - np.array(cfg.mean)) / np.array(cfg.std)
    hi = (1 - np.array(cfg.mean)) / np.array(cfg.std)
    for c in range(3):
        assert lo[c] - 1e-5 <= float(a[c].min()) and float(a[c].max()) <= hi[c] + 1e-5


def test_bad_input_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least the crop size"):
        create_transform(InputConfig(size=224, resize=200), is_training=False)
    with pytest.raises(ValueError, match="unknown interpolation"):
        create_transform(InputConfig(interpolation="sinc"), is_training=False)


def test_decode_stage_in_a_pool_thread_starts_no_openmp_threads() -> None:
    """Decode threads must not become OpenMP masters (see pawstream/vision/transforms.py)."""
    torch.set_num_threads(2)
    torch.ones(1 << 20).add_(1)  # the main thread's own OpenMP team exists before we count
    cfg = InputConfig()
    buf = io.BytesIO()
    photo((640, 480), seed=3).save(buf, "JPEG")
    data = buf.getvalue()
    transform = EvalTransform(cfg)

    def decode_stage(data: bytes) -> np.ndarray:
        return transform.pixels(load_rgb(data, draft_size=cfg.resize, max_pixels=10**8))

    proc = psutil.Process()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(threading.get_ident).result()  # the pool's thread is running before we count
        before = proc.num_threads()
        pixels = pool.submit(decode_stage, data).result()
        after = proc.num_threads()
        # the check is able to fail: a torch op of the same size in that thread starts a team
        pool.submit(lambda: torch.ones(3, 224, 224).sub_(0.5).div_(0.5)).result()
        with_torch = proc.num_threads()
    assert pixels.shape == (480, 640, 3)
    assert after == before
    # the torch stage in this (the model's) thread gives the same tensor as the whole transform
    assert torch.equal(transform.batch([pixels])[0], image_to_tensor(data, cfg, transform, max_pixels=10**8))
    assert with_torch > before
