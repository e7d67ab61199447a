"""The host allocator a CPU validation runs its steps with: freed memory kept in the process.

With glibc's defaults an eager PyTorch step on the CPU can hand its transient tensors back to
the kernel when they are freed (a chunk above ``M_MMAP_THRESHOLD`` is unmapped; a heap whose free
top passes ``M_TRIM_THRESHOLD`` is trimmed) and take them again, zeroed page by page, in the next
step. How often that happens depends on what the process freed before (glibc raises the
thresholds to the largest mmapped chunk freed so far), not on the model. Measured on a 2-core
virtual machine (x86_64, glibc, torch 2.13 CPU): the tiny MoE's prefill of 8 x 128 tokens in a
fresh process took 23.4 ms with 2,722 page faults a step, 13.4 ms with none.

``archcost`` prices a warmed-up step that reuses its memory, as a tuned CPU deployment runs (the
PyTorch Performance Tuning Guide, pytorch.org/tutorials/recipes/recipes/tuning_guide.html, CPU
section, advises an allocator that reuses memory, jemalloc or TCMalloc). ``keep_freed_memory``
sets glibc that way with ``mallopt(3)``: every allocation from the heap (``M_MMAP_MAX`` 0: a
chunk above the largest mmap threshold, 32 MiB, would otherwise still be mapped and unmapped
each time), and the heap never trimmed. Measured the same way: a small GPT-2's training step
(vocabulary 4,096, 2,048 tokens) computes a 32 MiB log-softmax, 20.1 ms a step with glibc's
defaults, 18.1 ms with allocations up to 32 MiB from the heap, 9.5 ms with every one (priced
8.3 ms). Training validation (``validate.step``) and generation (``validate.generate``) both
set it on the CPU. The setting holds for the rest of the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_MAX = -4
_NEVER = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> str:
    """Keep freed memory in this process (glibc); what the allocator now does, in words. A
    C library without ``mallopt`` (not glibc) is left as it is, and said so."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return "system allocator as configured (no mallopt: not glibc)"
    if mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _NEVER):
        return ("glibc, freed memory kept: every allocation from the heap (no mmap), heap "
                "never trimmed (mallopt)")
    return "system allocator as configured (mallopt refused the thresholds)"
