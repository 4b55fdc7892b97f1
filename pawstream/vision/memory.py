"""Process memory policy for serving a model: glibc's malloc thresholds, and heap trimming.

Measured on the worker's own inference path (micro-batches of 32, run in slices of 4): with
glibc's defaults, EfficientNet-Lite0 fp32 ran at 83-93 img/s and spent a third of its CPU time
in the kernel, page-faulting. glibc serves the model's activation buffers (a few MB each) from
fresh mmaps or from heap it has just handed back to the OS, so every op faults its memory in
again. With allocations up to 32 MB served from the heap and freed memory kept there, the same
batches ran at 147-162 img/s with almost no kernel time. Memory stays bounded by the working set
(the model's activations at the slice size), and HeapTrimmer hands memory back only when the
resident set passes a soft limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# mallopt takes a C int of bytes.
THRESHOLD_MAX_MB = (2**31 - 1) // 2**20


def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def tune_malloc(mmap_threshold_mb: float, trim_threshold_mb: float) -> bool:
    """Serve allocations below ``mmap_threshold_mb`` from the heap, and let glibc keep up to
    ``trim_threshold_mb`` of freed memory instead of returning it after every free.

    Process-wide and effective at once for every thread's arena. 0 for either leaves that
    threshold to glibc. Returns False (and logs) where libc has no mallopt (musl, macOS).
    """
    for mb in (mmap_threshold_mb, trim_threshold_mb):
        if not 0 <= mb <= THRESHOLD_MAX_MB:
            raise ValueError(f"malloc threshold {mb} MB is outside 0..{THRESHOLD_MAX_MB}")
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        logger.warning("malloc tuning unavailable: libc has no mallopt")
        return False
    ok = True
    for param, mb in ((M_MMAP_THRESHOLD, mmap_threshold_mb), (M_TRIM_THRESHOLD, trim_threshold_mb)):
        if mb > 0:
            ok = bool(mallopt(ctypes.c_int(param), ctypes.c_int(int(mb * 2**20)))) and ok
    if not ok:
        logger.warning(
            "mallopt refused a malloc threshold",
            extra={"mmap_threshold_mb": mmap_threshold_mb, "trim_threshold_mb": trim_threshold_mb},
        )
    return ok


# Bigger than any image the worker decodes (40 Mpx x 4 bytes: Pillow stores RGB as RGBX).
PILLOW_BLOCK_BYTES = 1 << 30


def pillow_images_in_one_block() -> None:
    """Make Pillow allocate each image in one block, so glibc serves a large image from a fresh
    mmap and hands it back to the OS as soon as it is freed.

    Pillow stores an image in blocks of 16 MB by default. Below tune_malloc's mmap threshold
    (32 MB) those come from the decode threads' heap arenas, and glibc keeps freed heap up to its
    trim threshold (1 GB): measured, a 6000x6000 RGB image left 154 MB resident after it was
    freed, and each decode thread kept the largest image it had ever decoded. In one block it
    goes back at once (25 MB after free). A block is allocated at the image's own size, not the
    block size; images under the mmap threshold (every ordinary photo) still come from the heap.
    Process-wide.
    """
    from PIL import Image

    Image.core.set_block_size(max(Image.core.get_block_size(), PILLOW_BLOCK_BYTES))


class HeapTrimmer:
    """Hands freed heap memory back to the OS (glibc ``malloc_trim``) when RSS passes a soft limit.

    Batches of varying size leave glibc's arenas holding freed activation buffers and decoded
    images: a worker's RSS crept from 410 to 640 MB over 24 mixed-size fp32 batches, and stayed
    at 435 MB with a trim after each. But a trim is not free: the next batch page-faults its
    activations back in, and trimming after every slice of 4 images cut the worker's fp32
    throughput by a third (68 -> 43 img/s). So it trims only when the resident set (read from
    /proc, ~10 us) is above ``soft_limit_mb``, and at most once every ``min_interval_s``: memory
    stays bounded and a busy worker pays for one refill per interval. ``soft_limit_mb`` 0 trims
    after every call. A no-op where libc has no malloc_trim.
    """

    def __init__(self, soft_limit_mb: float = 0.0, min_interval_s: float = 0.0) -> None:
        self.soft_limit = int(soft_limit_mb * 2**20)
        self.min_interval_s = min_interval_s
        self.last = -float("inf")
        self.trims = 0
        self._trim: Callable[[int], int] | None = getattr(_libc(), "malloc_trim", None)
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def resident_bytes(self) -> int | None:
        try:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def __call__(self) -> None:
        if self._trim is None:
            return
        if self.soft_limit > 0:
            now = time.monotonic()
            if now - self.last < self.min_interval_s:
                return
            rss = self.resident_bytes()
            if rss is not None and rss < self.soft_limit:
                return
            self.last = now
        self.trims += 1
        self._trim(0)
