"""Stage `evaluate`: test metrics, calibration and plots, from image bytes through the serving path.

The trained model runs on the val and test photos exactly as the worker would (image bytes ->
``image_to_tensor`` -> ``embed`` -> ``head``), not on the feature cache. A temperature is fitted
on val (minimum NLL) and test is scored before and after it.

Writes metrics.json (``dvc metrics show``), reports/plots/ (``dvc plots show``: confusion matrix,
reliability diagram) and models/eval/outputs.npz (val/test logits and embeddings, for `export`).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score
from torch.utils.data import DataLoader

from training import mlflow_utils
from training.calibration import ece, fit_temperature, nll, probabilities, reliability
from training.data import ImageBytesDataset, read_manifest, read_summary
from training.params import EVAL_PLOTS, EVALUATED, METRICS, TRAINED, EvaluateParams, start_stage
from training.progress import console, progress
from training.train import MODEL_FILE, read_trained

logger = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.npz"


def load_trained_model(trained: dict[str, Any]) -> torch.nn.Module:
    from pawstream.vision.models import build_model

    model = build_model(trained["arch"], len(trained["labels"]))
    model.load_state_dict(torch.load(TRAINED / MODEL_FILE, weights_only=True))
    return model.eval()


@torch.inference_mode()
def infer(model: Any, dataset: ImageBytesDataset, title: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, embeddings, labels) for every item, computed as Predictor.predict does."""
    model = model.to(memory_format=torch.channels_last)
    logits, embeddings, labels = [], [], []
    with progress() as bar:
        task = bar.add_task(title, total=len(dataset))
        for x, y in DataLoader(dataset, batch_size=32, num_workers=0):
            emb = model.embed(x.contiguous(memory_format=torch.channels_last))
            logits.append(model.head(emb).float().numpy())
            embeddings.append(emb.float().numpy())
            labels.append(y.numpy())
            bar.advance(task, len(y))
    return np.concatenate(logits), np.concatenate(embeddings), np.concatenate(labels)


def score(logits: np.ndarray, y: np.ndarray, temperature: float, bins: int) -> dict[str, float]:
    raw = probabilities(logits)
    cal = probabilities(logits, temperature)
    pred = raw.argmax(1)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    n_classes = logits.shape[1]
    try:
        auc = float(
            roc_auc_score(y, cal[:, 1]) if n_classes == 2 else roc_auc_score(y, cal, multi_class="ovr")
        )
    except ValueError:  # a split holding one class only (tiny CI datasets)
        auc = float("nan")
    return {
        "accuracy": float((pred == y).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": auc,
        "ece": ece(raw, y, bins),
        "ece_calibrated": ece(cal, y, bins),
        "nll": nll(logits, y),
        "nll_calibrated": nll(logits, y, temperature),
        "n": len(y),
    }


def write_plots(
    labels: list[str], y: np.ndarray, logits: np.ndarray, temperature: float, bins: int, out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    pred = logits.argmax(1)
    with (out / "confusion.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["actual", "predicted"])
        writer.writerows([labels[a], labels[p]] for a, p in zip(y, pred, strict=True))
    raw = reliability(probabilities(logits), y, bins)
    cal = reliability(probabilities(logits, temperature), y, bins)
    with (out / "reliability.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["bin_center", "accuracy", "confidence", "accuracy_uncalibrated", "count"])
        for r, c in zip(raw, cal, strict=True):
            writer.writerow(
                [
                    round((c.lower + c.upper) / 2, 4),
                    round(c.accuracy, 5),
                    round(c.confidence, 5),
                    round(r.accuracy, 5),
                    c.count,
                ]
            )

    matrix = confusion_matrix(y, pred, labels=list(range(len(labels))))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
        xlabel="predicted", ylabel="actual", title="test confusion matrix",
    )  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", label="perfect")
    for table, name in ((raw, "uncalibrated"), (cal, f"T = {temperature:.3f}")):
        pts = [(b.confidence, b.accuracy) for b in table if b.count]
        ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set(xlabel="confidence", ylabel="accuracy", title="test reliability diagram", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)


def run(params: EvaluateParams, settings_training: Any) -> dict[str, Any]:
    import mlflow

    trained = read_trained()
    labels: list[str] = trained["labels"]
    summary = read_summary()
    model = load_trained_model(trained)
    from pawstream.vision.artifact import InputConfig

    cfg = InputConfig.model_validate(trained["input"])
    outputs: dict[str, np.ndarray] = {}
    for split in ("val", "test"):
        ds = ImageBytesDataset(
            summary.roots(),
            read_manifest(split),
            labels,
            cfg,
            is_training=False,
            max_pixels=int(trained["max_pixels"]),
        )
        logits, emb, y = infer(model, ds, f"evaluate {split}")
        outputs |= {f"{split}_logits": logits, f"{split}_embeddings": emb, f"{split}_labels": y}
    temperature = fit_temperature(outputs["val_logits"], outputs["val_labels"])
    bins = params.ece_bins
    metrics: dict[str, Any] = {
        "test": score(outputs["test_logits"], outputs["test_labels"], temperature, bins),
        "val": score(outputs["val_logits"], outputs["val_labels"], temperature, bins),
        "temperature": temperature,
    }
    METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    write_plots(labels, outputs["test_labels"], outputs["test_logits"], temperature, bins, EVAL_PLOTS)
    EVALUATED.mkdir(parents=True, exist_ok=True)
    np.savez(EVALUATED / OUTPUTS_FILE, **outputs)  # type: ignore[arg-type]
    mlflow_utils.setup(settings_training)
    with mlflow.start_run(run_id=trained["run_id"]):
        flat = {
            f"{split}_{k}": float(v)
            for split in ("test", "val")
            for k, v in metrics[split].items()
            if k != "n" and np.isfinite(v)
        }
        mlflow.log_metrics({**flat, "temperature": temperature})
        mlflow.log_dict(metrics, "metrics.json")
        mlflow.log_artifacts(str(EVAL_PLOTS), "plots")
    return metrics


def main() -> None:
    settings, params = start_stage("evaluate")
    metrics = run(params.evaluate, settings.training)
    t = metrics["test"]
    console().print(
        f"evaluate: test accuracy {t['accuracy']:.4f} (n={t['n']}), F1 {t['f1']:.4f}, "
        f"ROC AUC {t['roc_auc']:.4f}, "
        f"ECE {t['ece']:.4f} -> {t['ece_calibrated']:.4f} at T={metrics['temperature']:.3f}"
    )


if __name__ == "__main__":
    main()
