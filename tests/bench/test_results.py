"""Result documents written by earlier runs still load (bench/results/*.json are kept as history)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results import BenchResult

# The pipeline bench's documents; lifecycle.json is bench/model_lifecycle.py's own, another shape.
RESULTS = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "bench" / "results").glob("*.json")
    if p.name != "lifecycle.json"
)


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_a_kept_result_loads_under_the_current_names(path: Path) -> None:
    raw = json.loads(path.read_text())
    result = BenchResult.model_validate(raw)
    assert result.micro_batch_max == raw.get("micro_batch_max", raw.get("max_batch"))
    assert result.model_batch_max == raw.get("model_batch_max", raw.get("inference_chunk"))
    for run, old in zip(result.pipelines, raw["pipelines"], strict=True):
        assert run.micro_batch_max == old.get("micro_batch_max", old.get("max_batch"))
    # and it is written back under the new names
    assert BenchResult.model_validate_json(result.model_dump_json()) == result
