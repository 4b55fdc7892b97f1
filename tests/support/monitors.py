"""A monitor process for broker tests, and its Prometheus page read back as a dict."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from pawstream.settings import Settings
from stack.children import service_command, service_env


def start_monitor(
    settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`pawstream monitor` with ``settings``, its output appended to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            service_command("monitor"),
            env=service_env(settings, extra=extra_env),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def scrape_metrics(port: int) -> dict[str, float]:
    """``/metrics`` on ``port`` as {name + sorted JSON labels (or just name): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + json.dumps(s.labels, sort_keys=True) if s.labels else s.name
            out[key] = s.value
    return out
