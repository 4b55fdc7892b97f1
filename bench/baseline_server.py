"""(c) The seed-style baseline: a plain FastAPI ``POST /predict``, one uploaded image per request.

This is what every seed of the project builds, kept here only to be measured against; it is
not part of the product. It serves the same artifact with the same Predictor, the same runtime,
the same torch thread count and the same malloc tuning as the worker. Each request decodes and
classifies its image alone (batch of one) in a single model thread, so requests never fight
over the two cores, and that thread also built the model, so it has the worker's OpenMP setup
(one team): the strongest honest form of the per-request design, not a straw man.

Run as ``python -m bench.baseline_server --artifact PATH --port N [--threads 2] [--runtime fp32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile

from pawstream.logs import configure_logging
from pawstream.osthreads import INFERENCE_THREAD, named_pool
from pawstream.schemas import EventError
from pawstream.vision.memory import tune_malloc
from pawstream.vision.predictor import Predictor

logger = logging.getLogger(__name__)


def create_app(predictor: Predictor, model_thread: ThreadPoolExecutor) -> FastAPI:
    """``model_thread``: the one thread that built ``predictor`` and runs every torch op."""
    app = FastAPI(title="pawstream bench baseline")

    def classify(data: bytes) -> dict[str, Any]:
        try:
            x = predictor.preprocess(data).unsqueeze(0)
            out = predictor.predict(x)
        except EventError as exc:
            raise HTTPException(422, exc.message) from exc
        probs = out.probs[0]
        best = int(np.argmax(probs))
        return {
            "label": predictor.labels[best],
            "confidence": float(probs[best]),
            "probs": {lbl: float(p) for lbl, p in zip(predictor.labels, probs, strict=True)},
            "runtime": predictor.runtime,
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = await file.read()
        return await asyncio.get_running_loop().run_in_executor(model_thread, classify, data)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", default="fp32")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--max-pixels", type=int, default=40_000_000)
    parser.add_argument("--malloc-mmap-threshold-mb", type=float, default=0.0)
    parser.add_argument("--malloc-trim-threshold-mb", type=float, default=0.0)
    args = parser.parse_args(argv)
    configure_logging("WARNING", json_logs=True)
    tune_malloc(args.malloc_mmap_threshold_mb, args.malloc_trim_threshold_mb)  # the worker's memory policy
    # Built in the thread that will run it, as the worker does (one OpenMP team per process).
    model_thread = named_pool(1, INFERENCE_THREAD)
    predictor = model_thread.submit(
        Predictor.from_artifact,
        args.artifact,
        threads=args.threads,
        max_pixels=args.max_pixels,
        runtime=args.runtime,
        cache_dir=args.cache_dir,
    ).result()
    uvicorn.run(
        create_app(predictor, model_thread),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
