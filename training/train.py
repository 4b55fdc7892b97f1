"""Stage `train`: fit the head (and optionally the last backbone block) on the cached features.

Phase 1 trains the linear head on pooled embeddings of the cached features (every view of every
training image). Phase 2, when ``train.tail_epochs > 0``, unfreezes the tail (ResNet-18 ``layer4``,
EfficientNet-Lite0's last block + head conv) and trains it with the head on the cached inputs to
the tail; BatchNorm keeps its ImageNet statistics. Each phase keeps its best epoch by val loss.
``train.full_finetune`` instead trains the whole network on images (with augmentation), on a GPU
when ``torch.cuda.is_available()``.

Writes models/train/{model.pt, train.json} and reports/train/history.csv, and opens the MLflow run
that `evaluate` and `export` add to.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pawstream.settings import TrainingSettings
from training import mlflow_utils
from training.backbone import split_backbone
from training.data import ImageBytesDataset, read_manifest, read_summary
from training.features import BACKBONE_FILE, read_info
from training.params import FEATURES, TRAIN_PLOTS, TRAINED, TrainParams, start_stage
from training.progress import console, progress

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
TRAIN_FILE = "train.json"
_EVAL_CHUNK = 256


@dataclass
class EpochLog:
    step: int
    phase: str
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


class History:
    """Per-epoch curves, sent to MLflow as they happen and kept for the DVC plot."""

    def __init__(self, log_mlflow: bool) -> None:
        self.rows: list[EpochLog] = []
        self.log_mlflow = log_mlflow

    def add(self, phase: str, epoch: int, train: tuple[float, float], val: tuple[float, float]) -> EpochLog:
        row = EpochLog(len(self.rows) + 1, phase, epoch, *train, *val)
        self.rows.append(row)
        if self.log_mlflow:
            import mlflow

            metrics = {k: v for k, v in asdict(row).items() if k.endswith(("loss", "acc"))}
            mlflow.log_metrics(metrics, step=row.step)
        logger.info(
            "%s epoch %d: train loss %.4f acc %.4f, val loss %.4f acc %.4f",
            phase, epoch, row.train_loss, row.train_acc, row.val_loss, row.val_acc, extra=asdict(row),
        )  # fmt: skip
        return row

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(EpochLog.__dataclass_fields__), lineterminator="\n")
            writer.writeheader()
            writer.writerows(asdict(r) for r in self.rows)


@torch.no_grad()
def _evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for start in range(0, len(x), _EVAL_CHUNK):
        logits = forward(x[start : start + _EVAL_CHUNK].float())
        target = y[start : start + _EVAL_CHUNK]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    return loss / len(x), correct / len(x)


def fit_cached(
    phase: str,
    modules: list[nn.Module],
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    params: TrainParams,
    history: History,
) -> EpochLog:
    """AdamW + cosine schedule over cached tensors; restores the best epoch (lowest val loss)."""
    x_tr, y_tr, x_val, y_val = data
    trainable = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=params.weight_decay)
    steps = epochs * -(-len(x_tr) // params.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    best: tuple[float, list[dict[str, Any]], EpochLog] | None = None
    with progress() as bar:
        task = bar.add_task(f"train {phase}", total=epochs)
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(x_tr))
            total, correct = 0.0, 0
            for start in range(0, len(x_tr), params.batch_size):
                idx = order[start : start + params.batch_size]
                logits = forward(x_tr[idx].float())
                loss = F.cross_entropy(logits, y_tr[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y_tr[idx]).sum())
            val = _evaluate(forward, x_val, y_val)
            row = history.add(phase, epoch, (total / len(x_tr), correct / len(x_tr)), val)
            if best is None or val[0] < best[0]:
                best = (val[0], [copy.deepcopy(m.state_dict()) for m in modules], row)
            bar.advance(task)
    assert best is not None
    for module, state in zip(modules, best[1], strict=True):
        module.load_state_dict(state)
    return best[2]


def _freeze(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def train_cached(model: nn.Module, arch: str, params: TrainParams, history: History) -> EpochLog:
    """Phase 1 (head on embeddings) and phase 2 (tail + head on cached tail inputs)."""
    train = torch.load(FEATURES / "train.pt", weights_only=True)
    val = torch.load(FEATURES / "val.pt", weights_only=True)
    frozen, tail = split_backbone(model, arch)  # type: ignore[arg-type]
    model.eval()  # BatchNorm keeps its ImageNet statistics in both phases
    _freeze(model, False)
    with torch.no_grad():
        emb_tr = torch.cat([tail(c.float()) for c in train["features"].split(_EVAL_CHUNK)])
        emb_val = torch.cat([tail(c.float()) for c in val["features"].split(_EVAL_CHUNK)])
    head: nn.Linear = model.head  # type: ignore[assignment]
    _freeze(head, True)
    best = fit_cached(
        "head",
        [head],
        head,
        (emb_tr, train["labels"], emb_val, val["labels"]),
        epochs=params.head_epochs,
        lr=params.lr,
        params=params,
        history=history,
    )
    if params.tail_epochs > 0:
        _freeze(tail, True)
        best = fit_cached(
            "tail",
            [tail, head],
            lambda x: head(tail(x)),
            (train["features"], train["labels"], val["features"], val["labels"]),
            epochs=params.tail_epochs,
            lr=params.tail_lr,
            params=params,
            history=history,
        )
    del frozen
    return best


def _batches(
    loader: DataLoader[tuple[torch.Tensor, int]], device: torch.device
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in loader:
        yield x.to(device), y.to(device)


def train_full(model: nn.Module, info: dict[str, Any], params: TrainParams, history: History) -> EpochLog:
    """Whole-network fine-tuning on images; the GPU path (slow but correct on CPU)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        logger.warning(
            "train.full_finetune without a GPU: every epoch runs the whole network on CPU", extra={}
        )
    summary = read_summary()
    cfg = params.input_config(str(info["arch"]))
    max_pixels = int(info["max_pixels"])
    labels: list[str] = list(info["labels"])

    def make(split: str, training: bool) -> ImageBytesDataset:
        return ImageBytesDataset(
            summary.roots(),
            read_manifest(split),
            labels,
            cfg,
            is_training=training,
            augment=params.augment,
            max_pixels=max_pixels,
        )

    workers = 2 if device.type == "cuda" else 0  # on CPU, decode workers would only steal the model's cores
    train_loader = DataLoader(
        make("train", True), batch_size=params.batch_size, shuffle=True, num_workers=workers
    )
    val_loader = DataLoader(make("val", False), batch_size=params.batch_size, num_workers=workers)
    model.to(device)
    _freeze(model, True)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone.parameters(), "lr": params.tail_lr},  # type: ignore[union-attr]
            {"params": model.head.parameters(), "lr": params.lr},  # type: ignore[union-attr]
        ],
        weight_decay=params.weight_decay,
    )
    best: tuple[float, dict[str, Any], EpochLog] | None = None
    for epoch in range(1, params.full_epochs + 1):
        model.train()
        total, correct, n = 0.0, 0, 0
        for x, y in _batches(train_loader, device):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        model.eval()
        v_loss, v_correct, v_n = 0.0, 0, 0
        with torch.no_grad():
            for x, y in _batches(val_loader, device):
                logits = model(x)
                v_loss += F.cross_entropy(logits, y, reduction="sum").item()
                v_correct += int((logits.argmax(1) == y).sum())
                v_n += len(y)
        row = history.add("full", epoch, (total / n, correct / n), (v_loss / v_n, v_correct / v_n))
        if best is None or row.val_loss < best[0]:
            best = (row.val_loss, copy.deepcopy(model.state_dict()), row)
    assert best is not None
    model.load_state_dict(best[1])
    model.to("cpu")
    return best[2]


def run(params: TrainParams, settings_training: TrainingSettings) -> dict[str, Any]:
    import mlflow

    from pawstream.vision.models import build_model

    info = read_info()
    arch = str(info["arch"])
    labels: list[str] = list(info["labels"])  # type: ignore[call-overload]
    torch.manual_seed(params.seed)
    model = build_model(arch, len(labels))
    model.load_state_dict(torch.load(FEATURES / BACKBONE_FILE, weights_only=True))
    model.head.reset_parameters()  # seeded, whatever head the backbone file carried
    experiment_id = mlflow_utils.setup(settings_training)
    history = History(log_mlflow=True)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{arch}-{str(info['data_hash'])[7:15]}"
    ) as run:
        mlflow.log_params(mlflow_utils.flatten("train", params.model_dump(mode="json")))
        mlflow.set_tags(
            {
                **mlflow_utils.git_state(),
                "data_hash": str(info["data_hash"]),
                "arch": arch,
                "requested_arch": str(info["requested_arch"]),
                "pretrained": str(info["pretrained"])[:4000],
                "pretrained_fallback": str(info["fallback"]).lower(),
            }
        )
        mlflow.log_dict(info, "features_info.json")
        if info["fallback"]:
            mlflow.set_tag("fallback_reason", str(info["fallback_reason"])[:4000])
        started = time.perf_counter()
        if params.full_finetune:
            best = train_full(model, info, params, history)
        else:
            best = train_cached(model, arch, params, history)
        seconds = time.perf_counter() - started
        feature_seconds = sum(t["seconds"] for t in info["timings"].values())  # type: ignore[attr-defined]
        mlflow.log_metrics(
            {"train_seconds": seconds, "feature_seconds": feature_seconds, "best_val_acc": best.val_acc}
        )
        run_id = run.info.run_id
    TRAINED.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), TRAINED / MODEL_FILE)
    history.write_csv(TRAIN_PLOTS / "history.csv")
    result: dict[str, Any] = {
        "run_id": run_id,
        "arch": arch,
        "requested_arch": info["requested_arch"],
        "labels": labels,
        "input": info["input"],
        "embedding_dim": info["embedding_dim"],
        "max_pixels": info["max_pixels"],
        "pretrained": info["pretrained"],
        "fallback": info["fallback"],
        "data_hash": info["data_hash"],
        "best": asdict(best),
        "train_seconds": round(seconds, 2),
        "feature_seconds": round(feature_seconds, 2),
    }
    (TRAINED / TRAIN_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def read_trained(trained: Path = TRAINED) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((trained / TRAIN_FILE).read_text())
    return result


def main() -> None:
    settings, params = start_stage("train")
    result = run(params.train, settings.training)
    best = result["best"]
    console().print(
        f"train: {result['arch']} best {best['phase']} epoch {best['epoch']} val acc {best['val_acc']:.4f} "
        f"in {result['train_seconds']} s; MLflow run {result['run_id']}"
    )


if __name__ == "__main__":
    main()
