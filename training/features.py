"""Stage `features`: resolve the pretrained backbone and cache its frozen part's outputs once.

On 2 CPU cores the backbone forward pass is nearly all of the cost, so it runs once per image
(plus ``train.aug_views`` augmented views of each training image) and `train` then fits the
tail and head on the cache in seconds per epoch; changing ``train.lr`` does not re-run this stage.

Outputs in data/features/: ``{train,val}.pt`` ({"features": float16 (N, C, H, W), "labels": int64
(N,), "view": int8 (N,), 0 = the eval view}), ``backbone.pt`` (the Classifier state dict with the
pretrained backbone) and ``info.json`` (arch, where the weights came from, any fallback, input config).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from pawstream.vision.artifact import InputConfig
from pawstream.vision.models import build_model
from pawstream.vision.pretrained import PretrainedWeights, resolve_pretrained
from training.backbone import split_backbone
from training.data import ImageBytesDataset, read_manifest, read_summary
from training.params import FEATURES, TrainParams, start_stage
from training.progress import console, progress

logger = logging.getLogger(__name__)

INFO_FILE = "info.json"
BACKBONE_FILE = "backbone.pt"


def resolve_weights(params: TrainParams) -> PretrainedWeights:
    p = params.pretrained
    if not p.enabled:
        logger.warning("pretrained weights disabled: backbone starts from random weights", extra={})
        return PretrainedWeights(params.arch, params.arch, None, None)
    weights = resolve_pretrained(
        params.arch,
        path=p.path,
        download=p.download,
        allow_fallback=p.allow_fallback,
        fallback_arch=p.fallback_arch,
    )
    if weights.fallback:
        console().rule(
            f"[bold red]FALLBACK: no ImageNet weights for {weights.requested_arch}; training {weights.arch}"
        )
        console().print(f"[red]{weights.fallback_reason}")
    return weights


@torch.inference_mode()
def extract(frozen: nn.Module, dataset: ImageBytesDataset, batch_size: int, title: str) -> torch.Tensor:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    chunks: list[torch.Tensor] = []
    with progress() as bar:
        task = bar.add_task(title, total=len(dataset))
        for x, _ in loader:
            out = frozen(x.contiguous(memory_format=torch.channels_last))
            chunks.append(out.to(torch.float16).contiguous())
            bar.advance(task, len(x))
    return torch.cat(chunks)


def run(train: TrainParams, max_pixels: int, out_dir: Path = FEATURES) -> dict[str, object]:
    summary = read_summary()
    root = summary.roots()
    torch.manual_seed(train.seed)
    weights = resolve_weights(train)
    model = build_model(weights.arch, len(summary.labels), weights.state_dict).eval()
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    cfg: InputConfig = train.input_config(weights.arch)
    frozen, _ = split_backbone(model, weights.arch)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict[str, float]] = {}
    for split, views in (("train", 1 + train.aug_views), ("val", 1)):
        items = read_manifest(split)
        feats, labels, view_ids = [], [], []
        started = time.perf_counter()
        for view in range(views):
            torch.manual_seed(train.seed + view)  # augmented views are reproducible
            ds = ImageBytesDataset(
                root,
                items,
                summary.labels,
                cfg,
                is_training=view > 0,
                augment=train.augment,
                max_pixels=max_pixels,
            )
            feats.append(extract(frozen, ds, train.extract_batch_size, f"features {split} view {view}"))
            labels.append(torch.tensor([ds.index[i.label] for i in items], dtype=torch.int64))
            view_ids.append(torch.full((len(items),), view, dtype=torch.int8))
        seconds = time.perf_counter() - started
        n = len(items) * views
        timings[split] = {"images": n, "seconds": round(seconds, 2), "img_per_s": round(n / seconds, 2)}
        torch.save(
            {"features": torch.cat(feats), "labels": torch.cat(labels), "view": torch.cat(view_ids)},
            out_dir / f"{split}.pt",
        )
        logger.info("features cached", extra={"split": split, **timings[split]})
    torch.save(model.state_dict(), out_dir / BACKBONE_FILE)
    info: dict[str, object] = {
        "requested_arch": weights.requested_arch,
        "arch": weights.arch,
        "pretrained": weights.describe(),
        "pretrained_source": weights.source,
        "pretrained_sha256": weights.sha256,
        "fallback": weights.fallback,
        "fallback_reason": weights.fallback_reason,
        "input": cfg.model_dump(mode="json"),
        "labels": summary.labels,
        "data_hash": summary.data_hash,
        "embedding_dim": model.embedding_dim,
        "max_pixels": max_pixels,
        "timings": timings,
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def read_info(features: Path = FEATURES) -> dict[str, object]:
    info: dict[str, object] = json.loads((features / INFO_FILE).read_text())
    return info


def main() -> None:
    _, params = start_stage("features")
    # Images were validated against prepare's pixel limit; every later decode uses the same one.
    info = run(params.train, params.prepare.max_pixels)
    console().print(
        f"features: arch {info['arch']}, pretrained {info['pretrained']}, timings {info['timings']}"
    )


if __name__ == "__main__":
    main()
