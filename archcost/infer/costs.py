"""The protocol serving numerics read a priced model replica through.

``serving`` and ``search`` need only five things of a replica (one model copy on ``gpus`` GPUs,
tensor- and pipeline-parallel): the time of a prefill step, the time of one decode step, the
time of one forward that runs decodes and prompt chunks together, the memory a batch holds,
and the memory a GPU offers. Anything with these members serves, so the serving numerics are
tested against closed forms and stay apart from how steps are traced and priced.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["StepCosts", "MEMORY_KEYS"]

# keys of StepCosts.memory_bytes; serving reads only peak_per_gpu
MEMORY_KEYS = ("weights", "kv_cache", "activations", "peak_per_gpu")


@runtime_checkable
class StepCosts(Protocol):
    """Step times and memory of one model replica."""

    gpus: int
    """GPUs one replica occupies (tp * pp)."""
    capacity_bytes: float
    """Usable memory per GPU, bytes."""

    def prefill_s(self, batch: int, input_len: int) -> float:
        """Seconds of one prefill of ``batch`` prompts of ``input_len`` tokens each (the first
        output token of each comes out of it)."""
        ...

    def decode_s(self, batch: int, context_len: int) -> float:
        """Seconds of one decode step: each of ``batch`` sequences gets one token, attending to
        ``context_len`` tokens, the new one included (the step at ``start_pos`` L of the
        model-file convention has context L + 1)."""
        ...

    def mixed_s(self, decode_batch: int, context_len: float,
                chunks: tuple[tuple[int, int, int], ...]) -> float:
        """Seconds of one forward that gives each of ``decode_batch`` running sequences a token
        (attending to ``context_len`` tokens, their mean) and prefills each chunk ``(start,
        stop, prompt_len)``: positions ``start .. stop - 1`` of a prompt of ``prompt_len``
        tokens (in-flight batching with chunked prefill)."""
        ...

    def memory_bytes(self, batch: int, max_len: int, input_len: int | None = None,
                     prefill_batch: int | None = None) -> dict:
        """Bytes held with ``batch`` sequences of up to ``max_len`` tokens, ``prefill_batch``
        of them (None: all) prefilled together at ``input_len`` tokens (None: up to
        ``max_len``, an upper bound): keys ``weights``, ``kv_cache``, ``activations``,
        ``peak_per_gpu``."""
        ...
