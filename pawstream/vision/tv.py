"""The one door to torchvision: every torchvision import in pawstream goes through here.

The torchvision wheel on PyPI is a CUDA build. Next to the CPU torch wheel its compiled ops
library does not load, and ``import torchvision`` then fails with ``operator torchvision::nms
does not exist`` because its Python side registers fake kernels for ops that were never
defined. Declaring the two schemas it needs first lets models and transforms import and work
(the detection ops stay unusable, and so does ``torchvision.io``: decode with Pillow).
When torchvision imports cleanly this does nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import ModuleType

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_shim: object | None = None  # keeps the torch.library.Library alive: dropping it undefines the ops


def _purge_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _declare_missing_ops() -> None:
    global _shim
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _shim = lib


def torchvision() -> ModuleType:
    """Import and return torchvision, applying the CPU-torch shim only when it is needed."""
    with _lock:
        if "torchvision.models" in sys.modules:
            return sys.modules["torchvision"]
        try:
            import torchvision as tv
            import torchvision.models
            import torchvision.transforms.v2
        except RuntimeError as exc:
            if "torchvision::nms" not in str(exc):
                raise
            logger.info("torchvision ops library did not load; declaring nms/qnms schemas", extra={})
            _purge_partial_import()
            _declare_missing_ops()
            import torchvision as tv
            import torchvision.models
            import torchvision.transforms.v2
        return tv
