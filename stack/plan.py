"""The local pawstream stack as supervised children: broker, worker(s), API and (optionally) the
monitor, all configured from one Settings object through ``stack.children.service_env``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from pawstream.errors import PawstreamError
from pawstream.settings import Settings
from stack.checks import PortPicker, http_check, tcp_check
from stack.children import service_command, service_env
from stack.supervisor import ChildSpec, StartupError, Supervisor, log_tail

LOCK_FILE = ".lock"
API_STOP_GRACE_S = 5.0


class StackBusy(PawstreamError, RuntimeError):
    """Another `pawstream up` or demo holds the state folder."""


@dataclass
class Stack:
    """What to run and where it will answer."""

    settings: Settings  # the effective settings every child gets (chosen ports and paths)
    specs: list[ChildSpec]
    log_dir: Path
    broker: str
    api_url: str
    metrics_urls: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. ports moved because the defaults were taken

    def supervisor(self, notify: Callable[[str], None] = lambda message: None) -> Supervisor:
        s = self.settings.services
        return Supervisor(
            self.specs,
            ready_timeout_s=s.ready_timeout_s,
            stop_timeout_s=s.stop_timeout_s,
            max_restarts=s.max_restarts,
            restart_window_s=s.restart_window_s,
            notify=notify,
        )


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


def _update(model: Settings, **sections: dict[str, object]) -> Settings:
    return model.model_copy(
        update={name: getattr(model, name).model_copy(update=values) for name, values in sections.items()}
    )


def plan_stack(settings: Settings, *, workers: int | None = None, monitor: bool | None = None) -> Stack:
    """Choose ports (the configured ones when free) and build one spec per service."""
    sv = settings.services
    state = sv.state_dir
    log_dir = state / "logs"
    picker = PortPicker(sv.port_fallback)
    b, api = settings.broker, settings.api
    embedded = sv.embedded_broker
    kafka: dict[str, object] = {}
    broker_port = b.port
    if embedded:
        broker_port = picker.pick("broker", "broker.port", b.host, b.port)
        kafka["bootstrap_servers"] = f"{b.host}:{broker_port}"
    api_port = picker.pick("API", "api.port", api.host, api.port)
    api_update: dict[str, object] = {"port": api_port}
    if embedded and b.storage.startswith("memory://"):
        # The result store remembers topic offsets; a fresh in-memory broker needs a fresh store.
        api_update["sqlite_path"] = state / "results.sqlite3"
    effective = _update(
        settings,
        kafka=kafka,
        broker={"port": broker_port},
        api=api_update,
        worker={"data_dir": state / "faust"},
    )
    n_workers = workers or sv.workers
    with_monitor = sv.monitor if monitor is None else monitor
    mport = settings.monitoring.metrics_port
    if with_monitor and mport:
        effective = _update(
            effective,
            monitoring={
                "metrics_port": picker.pick("monitor metrics", "monitoring.metrics_port", "0.0.0.0", mport)
            },
        )

    def env_for(s: Settings) -> dict[str, str]:
        return service_env(s, extra={"PYTHONUNBUFFERED": "1"})

    specs: list[ChildSpec] = []
    broker_addr = effective.kafka.bootstrap_servers
    if embedded:
        specs.append(
            ChildSpec(
                "broker",
                service_command("broker"),
                env_for(effective),
                ready=lambda: tcp_check(b.host, broker_port),
                tier=0,
                log_path=log_dir / "broker.log",
            )
        )
    metrics_urls: dict[str, str] = {}
    wport = settings.worker.metrics_port
    for i in range(1, n_workers + 1):
        name = "worker" if n_workers == 1 else f"worker-{i}"
        port = picker.pick(f"{name} metrics", "worker.metrics_port", "0.0.0.0", wport + i - 1) if wport else 0
        ws = _update(
            effective,
            worker={"metrics_port": port},
        )
        url = f"http://127.0.0.1:{port}/metrics"
        if port:
            metrics_urls[name] = url
        specs.append(
            ChildSpec(
                name,
                service_command("worker"),
                env_for(ws),
                ready=functools.partial(http_check, url) if port else None,
                tier=1,
                log_path=log_dir / f"{name}.log",
            )
        )
    api_url = f"http://{_local(api.host)}:{api_port}"
    specs.append(
        ChildSpec(
            "api",
            service_command("api"),
            env_for(effective),
            ready=lambda: http_check(f"{api_url}/readyz"),
            # uvicorn's graceful shutdown waits for every open request, ?wait ones included (up to
            # api.wait_max_s), even when their clients are gone: don't hold Ctrl-C up for them.
            stop_timeout_s=min(API_STOP_GRACE_S, sv.stop_timeout_s),
            tier=1,
            log_path=log_dir / "api.log",
        )
    )
    if with_monitor:
        mp = effective.monitoring.metrics_port
        murl = f"http://127.0.0.1:{mp}/metrics"
        if mp:
            metrics_urls["monitor"] = murl
        specs.append(
            ChildSpec(
                "monitor",
                service_command("monitor"),
                env_for(effective),
                ready=functools.partial(http_check, murl) if mp else None,
                tier=1,
                optional=True,  # the demo and `up` work without monitoring
                log_path=log_dir / "monitor.log",
            )
        )
    return Stack(effective, specs, log_dir, broker_addr, api_url, metrics_urls, picker.moved)


@contextlib.contextmanager
def state_dir(path: Path) -> Iterator[Path]:
    """Hold ``path`` for this run (a lock, so two stacks cannot share it) and empty it first."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackBusy(
                f"another `pawstream up` or demo is using {path}; stop it first, or give this one "
                "its own folder with PAWSTREAM_SERVICES__STATE_DIR"
            ) from None
        for entry in path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        yield path
    finally:
        os.close(fd)  # releases the lock


def probe_image() -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((96, 96)).save(buf, format="JPEG")
    return buf.getvalue()


def api_headers(settings: Settings) -> dict[str, str]:
    key = settings.api.api_key
    return {"X-API-Key": key.get_secret_value()} if key else {}


def probe_pipeline(stack: Stack, timeout_s: float) -> float:
    """Send one image through API -> broker -> worker -> API store; seconds until its prediction."""
    started = time.monotonic()
    deadline = started + timeout_s
    wait_max = stack.settings.api.wait_max_s

    def budget() -> float:
        return max(0.0, min(wait_max, deadline - time.monotonic()))

    with httpx.Client(
        base_url=stack.api_url, headers=api_headers(stack.settings), timeout=wait_max + 10, trust_env=False
    ) as client:
        response = client.post(
            "/v1/images",
            params={"wait": budget()},
            files={"file": ("probe.jpg", probe_image(), "image/jpeg")},
        )
        response.raise_for_status()
        body = response.json()
        while body["status"] == "pending":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no prediction for the probe image within {timeout_s:.0f}s")
            body = client.get(f"/v1/predictions/{body['id']}", params={"wait": budget()}).json()
    if body["status"] != "done":
        raise RuntimeError(f"the probe image failed: {body.get('error')}")
    return time.monotonic() - started


def start_stack(stack: Stack, supervisor: Supervisor) -> float:
    """Start every service, then prove the pipeline with a probe image; stop all on failure."""
    supervisor.start()
    try:
        return probe_pipeline(stack, stack.settings.services.probe_timeout_s)
    except BaseException as exc:
        supervisor.stop()
        if not isinstance(exc, Exception):
            raise
        workers = [c for c in supervisor.children if c.name.startswith("worker")]
        tails = "".join(
            f"\n  {c.name} log ({c.spec.log_path}):\n{log_tail(c.spec.log_path)}" for c in workers
        )
        raise StartupError(f"the pipeline did not classify a probe image: {exc}{tails}") from exc
