"""The model's class names, for validating feedback labels, read from the artifact's metadata.

Read without torch (artifact.json only) and re-read when the file changes, so a newly trained
model's labels apply without restarting the API.
"""

from __future__ import annotations

from pathlib import Path

from pawstream.errors import PawstreamError
from pawstream.vision.artifact import META_FILE, read_meta


class ModelUnavailable(PawstreamError):
    """No readable model artifact, so labels cannot be validated."""


class ModelLabels:
    def __init__(self, artifact_path: Path) -> None:
        self.artifact_path = Path(artifact_path)
        self._stamp: tuple[int, int] | None = None
        self._labels: list[str] = []

    def get(self) -> list[str]:
        meta_path = self.artifact_path / META_FILE
        try:
            st = meta_path.stat()
        except OSError as exc:
            raise ModelUnavailable(
                f"no model artifact at {self.artifact_path}: feedback labels cannot be validated "
                "until one exists (train one, or set PAWSTREAM_MODEL__ARTIFACT_PATH)"
            ) from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self._labels = list(read_meta(self.artifact_path).labels)
            except (OSError, ValueError) as exc:
                msg = f"model artifact at {self.artifact_path} is unreadable: {exc}"
                raise ModelUnavailable(msg) from exc
            self._stamp = stamp
        return self._labels
