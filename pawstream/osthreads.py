"""Kernel-visible thread names, so per-thread CPU can tell the model's threads from the rest.

Python 3.11 names threads only for itself; `top -H`, `/proc/<pid>/task/*/comm` and the bench's
CPU budget see "python" for all of them. A thread created by a named thread inherits its name
(Linux copies `comm` at clone), so the OpenMP team torch starts from the inference thread, and
the threads ONNX Runtime and OpenVINO start from it, carry the inference thread's name too.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

INFERENCE_THREAD = "ps-infer"
DECODE_THREAD = "ps-decode"
_PR_SET_NAME = 15  # linux/prctl.h
_MAX_NAME_BYTES = 15  # the kernel's TASK_COMM_LEN is 16, with the terminating NUL


def name_os_thread(name: str) -> bool:
    """Give the calling thread ``name`` in the kernel (Linux only; cut to 15 bytes).

    Returns False where that is not possible: naming is for observability, never a reason to fail.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NAME, name.encode()[:_MAX_NAME_BYTES], 0, 0, 0) != 0:
        logger.debug("prctl(PR_SET_NAME) failed", extra={"errno": ctypes.get_errno()})
        return False
    return True


def named_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads carry ``name`` in the kernel as well as in Python."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=name_os_thread, initargs=(name,))
