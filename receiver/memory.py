"""How a receiver process handles its memory: settled once, when it starts serving.

A LiteLLM body is megabytes (512 events of about 12 KB), and each is copied a few times on
its way in (socket reads, the body, the decoder's input), then decoded into thousands of
small objects. Left to their defaults, the garbage collector and the C allocator cost about
as much as the decoding itself:

- The collector's full collections scan every object the process holds, most of them the
  imported libraries' (some 160,000), every few requests. Frozen at startup, those are
  never scanned again; the events' objects still are.
- glibc's ``malloc`` serves blocks above 128 KB with a fresh ``mmap`` and gives them back on
  ``free``, so every body's pages are faulted in anew (about 1,500 page faults per 6 MB
  body, measured: 3 to 4 ms of kernel time out of some 25 ms per request). Raising the
  mapping threshold above the largest body and keeping freed memory for reuse avoids it;
  a process then keeps the memory its busiest moment needed (``TRIM_THRESHOLD_BYTES`` at
  most beyond that), which ``--max-body-mb`` bounds per request.
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger("spend_receiver")

# glibc's mallopt() parameters (malloc.h), and the values set: blocks up to 32 MiB (above
# the default 20 MB body limit) come from the reused heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024


def settle_memory() -> None:
    """Freeze what the process holds so far out of the collector's reach, and have ``malloc``
    keep big blocks for reuse (a no-op where the C library is not glibc)."""
    gc.freeze()
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    ):
        log.info("the C library did not take the receiver's malloc settings; running without")
