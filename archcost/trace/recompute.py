"""Activation recomputation policies applied to the repeated blocks while tracing.

- ``full``: every block is wrapped in ``torch.utils.checkpoint`` (non-reentrant): only its
  inputs are kept; its forward runs again during backward (Narayanan et al. SC'21).
- ``selective``: blocks are checkpointed with torch's selective activation checkpointing: the
  outputs of the weight matmuls are saved, everything else is recomputed -- the attention core
  (attention kernels, softmax, score/value batched matmuls, attention dropout; Korthikanti et
  al. 2022, Sec. 5) and the cheap elementwise and norm ops (the op-level policy of torchtitan).
  NB: the attention core is recognised by shape: ops on a square (S x S) score matrix.
Ops run by the recomputation are recorded in the ``recompute`` phase.
"""

from __future__ import annotations

import enum

import torch
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
    set_checkpoint_early_stop,
)

from archcost.trace.records import Phase

__all__ = ["Recompute", "block_caller", "is_attention_core"]


class Recompute(str, enum.Enum):
    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


_SAVED_OPS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution"}
_ATTENTION_OPS = {
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward", "_efficient_attention_forward", "_softmax", "_safe_softmax",
}


def _square_tail(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() >= 3 and x.shape[-1] == x.shape[-2] and x.shape[-1] > 1


def is_attention_core(op, args) -> bool:
    """Attention kernels, softmax, and the batched matmuls, scalings, masks and dropouts of an
    (S x S) score matrix."""
    name = op._overloadpacket.__name__
    if name in _ATTENTION_OPS:
        return True
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in ("bmm", "baddbmm") and len(tensors) >= 2:
        a, b = tensors[-2], tensors[-1]
        return a.shape[-2] == b.shape[-1] or _square_tail(a)  # scores out, or probs in
    if name in ("native_dropout", "mul", "div", "masked_fill", "where", "add"):
        return bool(tensors) and _square_tail(tensors[0]) and tensors[0].dim() >= 3
    return False


def block_caller(state, policy: Recompute):
    """How a repeated block is called under ``policy``.

    ``state`` carries the current phase and module stack; for selective recompute it counts in
    ``sac_saved`` the outputs that torch's selective checkpointing caches (the saved matmuls).
    The checkpoint's own inputs are seen by the capture's saved-tensor hooks.
    """
    if policy is Recompute.NONE:
        return lambda orig, args, kwargs, path: orig(*args, **kwargs)

    def selective_policy(ctx, op, *args, **kwargs):
        save = op._overloadpacket.__name__ in _SAVED_OPS and not is_attention_core(op, args)
        state.sac_decision = "save" if save and not ctx.is_recompute else None
        return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE

    def call(orig, args, kwargs, path):

        def run(*a, **k):
            again = state.phase is Phase.BACKWARD
            if again:  # the block's own forward runs again: its ops belong to it
                state.phase = Phase.RECOMPUTE
                state.module_stack.append(path)
            try:
                return orig(*a, **k)
            finally:
                if again:
                    state.module_stack.pop()
                    state.phase = Phase.BACKWARD

        if policy is Recompute.SELECTIVE:
            return checkpoint(run, *args, use_reentrant=False,
                              context_fn=lambda: create_selective_checkpoint_contexts(
                                  selective_policy, allow_cache_entry_mutation=True),
                              **kwargs)
        # NB: the whole block forward runs again (Megatron's full recomputation), not stopping
        # early once the saved tensors are rebuilt as torch's default does
        with set_checkpoint_early_stop(False):
            return checkpoint(run, *args, use_reentrant=False, **kwargs)

    return call
