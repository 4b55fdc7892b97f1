"""`pawstream smoke --api URL`: a post-deploy smoke test of a running stack, through HTTP only.

Each step runs against the deployed services exactly as a client would reach them, stops the
test at its first failure, and is reported with ok/FAIL and its timing:

1. ``ready``: ``GET /readyz`` answers 200 (polled: a stack just started may need a moment);
2. ``classify``: ``POST /v1/images?wait=`` a photo, then wait for its result (done, not failed);
3. ``label``: the label is one of the model's classes (the prediction's ``probs`` keys), and
   the expected one when ``--expect-label`` is given;
4. ``lookup``: ``GET /v1/predictions/{id}`` finds it with the same label;
5. ``feedback``: ``POST /v1/feedback`` with that label is accepted;
6. ``monitoring``: ``GET /v1/monitoring`` is real data, not the "unavailable"/"not_available"
   placeholder an API without a reachable monitor serves (polled: the monitor may lag);
7. ``metrics <url>``: each ``--metrics`` URL answers 200 with Prometheus text.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from pawstream.errors import PawstreamError

# What api/monitor_provider.py serves when it has no monitor to read.
MONITORING_PLACEHOLDERS = ("unavailable", "not_available")
POLL_INTERVAL_S = 0.5


class StepFailed(PawstreamError):
    """A smoke step's check did not hold; the message says what was seen."""


@dataclass(frozen=True)
class SmokeOptions:
    api: str
    metrics: list[str] = field(default_factory=list)
    photo: Path | None = None
    expect_label: str | None = None
    timeout_s: float = 60.0
    api_key: str | None = None


@dataclass
class StepResult:
    step: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class SmokeRun:
    options: SmokeOptions
    client: httpx.Client
    photo: bytes
    report: Callable[[StepResult], None]
    steps: list[StepResult] = field(default_factory=list)
    deadline: float = 0.0

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def step(self, name: str, check: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail, ok = check(), True
        except StepFailed as exc:
            detail, ok = str(exc), False
        except httpx.HTTPError as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        except (KeyError, TypeError, ValueError) as exc:
            # An answer of an unexpected shape fails the step (one FAIL line), not the whole run.
            detail, ok = f"unexpected response: {type(exc).__name__}: {exc}", False
        result = StepResult(name, ok, round(time.monotonic() - started, 3), detail)
        self.steps.append(result)
        self.report(result)
        if not ok:
            raise StepFailed(name)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise StepFailed(f"HTTP {response.status_code}, not JSON: {response.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise StepFailed(f"HTTP {response.status_code}, unexpected body: {body!r}"[:300])
    return body


def _poll(run: SmokeRun, attempt: Callable[[], str | None], what: str) -> str:
    """``attempt()`` until it returns a detail (not None) or the smoke test's deadline passes."""
    last = "no answer yet"
    while True:
        try:
            detail = attempt()
        except (StepFailed, httpx.HTTPError) as exc:
            detail, last = None, str(exc) or type(exc).__name__
        if detail is not None:
            return detail
        if run.left() <= 0:
            raise StepFailed(f"{what} within {run.options.timeout_s:g}s (last: {last})")
        time.sleep(min(POLL_INTERVAL_S, run.left()))  # between polls of a remote service, deadline-bounded


def smoke_steps(run: SmokeRun) -> dict[str, Any]:
    """Run the steps in order (raising StepFailed at the first failure); what they found."""
    found: dict[str, Any] = {}
    client = run.client

    def ready() -> str | None:
        r = client.get("/readyz")
        if r.status_code != 200:
            raise StepFailed(f"/readyz answered {r.status_code}: {r.text[:200]}")
        return "ready"

    run.step("ready", lambda: _poll(run, ready, "/readyz did not answer 200"))

    def classify() -> str:
        files = {"file": ("smoke.jpg", run.photo, "application/octet-stream")}
        r = client.post("/v1/images", params={"wait": run.left()}, files=files)
        body = _json(r)
        if r.status_code not in (200, 202):
            raise StepFailed(f"POST /v1/images answered {r.status_code}: {body}")
        found["id"] = body["id"]
        while body.get("status") == "pending":
            if run.left() <= 0:
                raise StepFailed(f"{found['id']} still pending after {run.options.timeout_s:g}s")
            r = client.get(f"/v1/predictions/{found['id']}", params={"wait": run.left()})
            body = _json(r)
        if body.get("status") != "done":
            raise StepFailed(f"{found['id']} {body.get('status')}: {body.get('error')}")
        found["prediction"] = body["prediction"]
        p = body["prediction"]
        return f"id {found['id']}: {p['label']} ({p['confidence']:.3f}), model {p['model']['version']}"

    run.step("classify", classify)

    def label() -> str:
        p = found["prediction"]
        labels = sorted(p.get("probs", {}))
        if p["label"] not in labels:
            raise StepFailed(f"label {p['label']!r} is not one of the model's labels {labels}")
        expected = run.options.expect_label
        if expected is not None and p["label"] != expected:
            raise StepFailed(f"label {p['label']!r}, expected {expected!r}")
        return f"{p['label']!r} in {labels}" + (" as expected" if expected else "")

    run.step("label", label)

    def lookup() -> str:
        r = client.get(f"/v1/predictions/{found['id']}")
        body = _json(r)
        if r.status_code != 200 or body.get("status") != "done":
            raise StepFailed(f"GET /v1/predictions/{found['id']} answered {r.status_code}: {body}")
        if body["prediction"]["label"] != found["prediction"]["label"]:
            raise StepFailed(f"stored label {body['prediction']['label']!r} differs")
        return f"{found['id']} done"

    run.step("lookup", lookup)

    def feedback() -> str:
        r = client.post("/v1/feedback", json={"id": found["id"], "label": found["prediction"]["label"]})
        if r.status_code != 202:
            raise StepFailed(f"POST /v1/feedback answered {r.status_code}: {r.text[:300]}")
        return "accepted"

    run.step("feedback", feedback)

    def monitoring() -> str | None:
        r = client.get("/v1/monitoring")
        body = _json(r)
        status = body.get("status")
        if r.status_code != 200 or status in MONITORING_PLACEHOLDERS:
            raise StepFailed(f"status {status!r}: {body.get('message')}")
        return f"status {status!r}"

    run.step("monitoring", lambda: _poll(run, monitoring, "/v1/monitoring stayed unavailable"))

    for url in run.options.metrics:

        def metrics(url: str = url) -> str:
            # Its own request: the metrics live on other hosts and ports, and get no API key.
            r = httpx.get(url, timeout=min(10.0, run.left() + 1))
            if r.status_code != 200:
                raise StepFailed(f"{url} answered {r.status_code}")
            try:
                families = list(text_string_to_metric_families(r.text))
            except ValueError as exc:
                raise StepFailed(f"{url} is not Prometheus text: {exc}") from exc
            if not families:
                raise StepFailed(f"{url} has no metrics")
            return f"{len(families)} metric families"

        run.step(f"metrics {url}", metrics)
    return found


def run_smoke_test(
    options: SmokeOptions, report: Callable[[StepResult], None]
) -> tuple[bool, list[StepResult]]:
    """(passed, steps): the steps up to and including the first failure."""
    from stack.plan import probe_image

    photo = options.photo.read_bytes() if options.photo else probe_image()
    headers = {"X-API-Key": options.api_key} if options.api_key else {}
    # Each request is bounded by the whole test's timeout plus a margin for a ?wait answer.
    with httpx.Client(base_url=options.api, headers=headers, timeout=options.timeout_s + 10) as client:
        run = SmokeRun(options, client, photo, report, deadline=time.monotonic() + options.timeout_s)
        try:
            smoke_steps(run)
        except StepFailed:
            return False, run.steps
    return True, run.steps


def run_smoke(options: SmokeOptions, *, as_json: bool) -> int:
    """0 when every step passed; 1 naming the failing step; 2 for an unreadable --photo."""
    err = Console(stderr=True)
    out = err if as_json else Console()
    if options.photo is not None and not options.photo.is_file():
        err.print(f"[red]error:[/] --photo {options.photo}: no such file")
        return 2

    def report(s: StepResult) -> None:
        mark = "[green]ok[/]  " if s.ok else "[red]FAIL[/]"
        out.print(f"{mark} {s.step:<12} {s.seconds:6.2f}s  {s.detail}", highlight=False, soft_wrap=True)

    passed, steps = run_smoke_test(options, report)
    if as_json:
        doc = {"ok": passed, "api": options.api, "steps": [asdict(s) for s in steps]}
        sys.stdout.write(json.dumps(doc) + "\n")
    if passed:
        err.print(f"[green]smoke test passed[/] ({len(steps)} steps)")
        return 0
    err.print(f"[red]smoke test FAILED at step {steps[-1].step!r}[/]: {steps[-1].detail}")
    return 1
