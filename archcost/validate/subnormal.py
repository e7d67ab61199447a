"""Subnormal floats in a real CPU step: counted once, so a validation says when its measured
time holds the slow path an x86 core takes for them, which no profile prices.

A float below its format's smallest normal number (``torch.finfo(dtype).tiny``) but not zero is
subnormal; an x86 core multiplies and adds such operands through a microcode assist, many times
slower than normal ones. A model whose weights are drawn too wide (PyTorch's N(0, 1)
embeddings under a tied head: logits of standard deviation ~sqrt(hidden)) puts out a softmax of
mostly subnormal numbers and a backward of subnormal gradients: a small BERT's backward matmuls
took 3.3x their time on normal floats (BENCHMARKS "CPU fidelity, GPT-2, BERT and Falcon
initialised as published"). ``count_subnormals`` runs a callable under a dispatch mode that
counts, over every floating output of every op, the elements and the subnormal ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["count_subnormals", "subnormal_warning", "summed"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def count_subnormals(fn: Callable[[], Any]) -> dict[str, int]:
    """Run ``fn`` once; {"elements": floating elements its ops put out, "subnormal": those
    nonzero and below their dtype's smallest normal}."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    counts = {"elements": 0, "subnormal": 0}

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):  # plain tensors: a DTensor's local ops come through
                if type(t) in _PLAIN and t.is_floating_point() and t.numel() and not t.is_meta:
                    counts["elements"] += t.numel()
                    tiny = torch.finfo(t.dtype).tiny
                    counts["subnormal"] += int(((t != 0) & (t.abs() < tiny)).sum())
            return out

    with _Count():
        fn()
    return counts


def summed(counts: list[dict[str, int] | None]) -> dict[str, int] | None:
    """The counts of every rank that counted, added (each rank of a multi-process validation
    counts its own ops: a subnormal gradient on one rank slows the step of all); None where
    none counted."""
    counted = [c for c in counts if c]
    if not counted:
        return None
    return {k: sum(c[k] for c in counted) for k in ("elements", "subnormal")}


def subnormal_warning(counts: dict[str, int] | None, what: str) -> str | None:
    """One line where ``what`` (a step, a generation) put out subnormal floats; None where it
    did not (or was not counted)."""
    if not counts or not counts.get("subnormal"):
        return None
    n, total = counts["subnormal"], max(counts["elements"], 1)
    return (f"{n:,} of the {total:,} float values {what} computed were subnormal ({n / total:.2%})"
            ": a CPU computes with them many times slower than with normal floats, which no "
            "profile prices, so the measured time reads long; initialise the weights as the "
            "model was published (e.g. normal, std 0.02) or call torch.set_flush_denormal(True) "
            "in the model file")
