"""Activation recomputation policies applied to the repeated blocks while tracing.

- ``full``: every block is wrapped in ``torch.utils.checkpoint`` (non-reentrant): only its
  inputs are kept; its forward runs again during backward (Narayanan et al. SC'21).
- ``selective``, as the runtime profile defines it (``runtime.SelectiveRecompute``):
  ``attention-core`` (Megatron-LM; Korthikanti et al. 2022, Sec. 5): the attention core
  (attention kernels, softmax, the score/value batched matmuls, the attention dropout) is
  recomputed; every other tensor autograd saves is kept. Implemented with torch's selective
  activation checkpointing: a first trace without recomputation finds which forward ops'
  outputs autograd saves, and the policy counts exactly those (outside the attention core) as
  held; it caches every op outside the core for torch's replay, which would otherwise run the
  block from its start again, so only the core is recomputed. NB: the attention core is recognised by shape: ops on a square (S x S)
  score matrix. ``op-sac`` (torchtitan's per-op policy, torchtitan 9dec370
  torchtitan/parallelisms/parallelize_llama.py:214-270): the outputs of ``aten.mm`` (all but
  every second one of each block call) and of the attention kernels are saved, every other
  op of the block is recomputed. ``mla-up-proj`` (Megatron-Core ``--recompute-modules
  mla_up_proj``, NVIDIA/Megatron-LM megatron/core/transformer/multi_latent_attention.py): in
  multi-latent attention the up-projections of the compressed query and key-value latents
  (modules named as DeepSeek's ``wq_b``/``wkv_b``, Hugging Face's ``q_b_proj``/``kv_b_proj``
  or Megatron's ``linear_q_up_proj``/``linear_kv_up_proj``) and the attention module's own ops
  after the first of them up to the attention kernel (RoPE, concatenation, padding) are
  recomputed; the compressed latents, the attention output and everything else autograd saves
  are kept, as for ``attention-core``. NB: the stretch also holds the attention module's own
  ops on the down-projection's output that fall inside it (the split of the key-value latent
  from its RoPE key, that key's RoPE): they run again, the down-projection does not.
Ops run by the recomputation are recorded in the ``recompute`` phase.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
    set_checkpoint_early_stop,
)

from archcost.options import Recompute
from archcost.runtime import SelectiveRecompute
from archcost.trace.records import Phase

__all__ = ["Recompute", "block_caller", "is_attention_core"]


_ATTENTION_OPS = {
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward", "_efficient_attention_forward", "_softmax", "_safe_softmax",
}


def _square_tail(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() >= 3 and x.shape[-1] == x.shape[-2] and x.shape[-1] > 1


def is_attention_core(op, args) -> bool:
    """Attention kernels and softmax, and any op on an (S x S) score matrix: the score and
    value batched matmuls, scaling, masking and the attention dropout."""
    name = op._overloadpacket.__name__
    if name in _ATTENTION_OPS:
        return True
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in ("bmm", "baddbmm") and len(tensors) >= 2:
        a, b = tensors[-2], tensors[-1]
        return a.shape[-2] == b.shape[-1] or _square_tail(a)  # scores out, or probs in
    return bool(tensors) and _square_tail(tensors[0]) and tensors[0].dim() >= 3


# torchtitan's per-op save list (parallelize_llama.py:214-224 at 9dec370), with the CPU flash
# kernel a fake trace records in place of CUDA's
_OP_SAC_SAVE = {"mm", "_scaled_dot_product_efficient_attention",
                "_scaled_dot_product_flash_attention",
                "_scaled_dot_product_flash_attention_for_cpu",
                "_scaled_dot_product_cudnn_attention", "reduce_scatter_tensor", "abs", "max"}


# names of multi-latent attention's up-projection modules (the last part of a module path)
UP_PROJ_MODULES = frozenset({"wq_b", "wkv_b", "q_b_proj", "kv_b_proj", "linear_q_up_proj",
                             "linear_kv_up_proj"})


def block_caller(state, policy: Recompute, saved_keys=frozenset(),
                 selective: SelectiveRecompute = SelectiveRecompute.ATTENTION_CORE):
    """How a repeated block is called under ``policy``.

    ``state`` carries the current phase and module stack; for selective recompute it counts in
    ``sac_saved`` the outputs that torch's selective checkpointing caches. ``saved_keys`` holds
    (module, op, k) of the forward ops whose outputs autograd saves without recomputation
    (``attention-core`` only); ``selective`` says what selective recomputation saves.
    The checkpoint's own inputs are seen by the capture's saved-tensor hooks.
    """
    if policy is Recompute.NONE:
        return lambda orig, args, kwargs, path: orig(*args, **kwargs)

    counters: dict[tuple, int] = {}

    def keep(ctx, where: str, name: str, recompute: bool):
        """Megatron checkpoints only the recomputed stretch (its inputs saved, nothing before
        it replayed): every other op's output is kept through backward, so torch's replay,
        which runs the block from its start, recomputes none of them; its memory is counted
        only where autograd saves it without recomputation (``saved_keys``)."""
        key = (ctx.is_recompute, where, name)
        k = counters[key] = counters.get(key, 0) + 1
        held = (where, name, k) in saved_keys and not recompute
        state.sac_decision = "save" if held and not ctx.is_recompute else None
        return CheckpointPolicy.PREFER_RECOMPUTE if recompute else CheckpointPolicy.MUST_SAVE

    def attention_core_policy(ctx, op, *args, **kwargs):
        return keep(ctx, state.module_stack[-1], str(op._overloadpacket),
                    is_attention_core(op, args))

    def up_proj_context():
        # per block call (forward, then its recompute): the attention modules whose
        # up-projection has run, and those whose attention kernel has run since
        opened: dict[bool, set] = {False: set(), True: set()}
        closed: dict[bool, set] = {False: set(), True: set()}

        def policy_fn(ctx, op, *args, **kwargs):
            where = state.module_stack[-1]
            again = ctx.is_recompute
            parent, _, leaf = where.rpartition(".")
            kernel = op._overloadpacket.__name__ in _ATTENTION_OPS
            if leaf in UP_PROJ_MODULES:
                opened[again].add(parent)
                region = True
            else:
                region = where in opened[again] and where not in closed[again] and not kernel
                if kernel and where in opened[again]:
                    closed[again].add(where)
            return keep(ctx, where, str(op._overloadpacket), region)

        return create_selective_checkpoint_contexts(policy_fn, allow_cache_entry_mutation=True)

    def op_sac_context():
        mm = {False: 0, True: 0}  # matmuls seen in this block call, forward and recompute

        def policy_fn(ctx, op, *args, **kwargs):
            name = op._overloadpacket.__name__
            if name == "mm":
                mm[ctx.is_recompute] += 1
            save = name in _OP_SAC_SAVE and not (name == "mm" and mm[ctx.is_recompute] % 2 == 0)
            state.sac_decision = "save" if save and not ctx.is_recompute else None
            return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE

        return create_selective_checkpoint_contexts(policy_fn, allow_cache_entry_mutation=True)

    def context_fn():
        if selective is SelectiveRecompute.OP_SAC:
            return op_sac_context()
        if selective is SelectiveRecompute.MLA_UP_PROJ:
            return up_proj_context()
        return create_selective_checkpoint_contexts(attention_core_policy,
                                                    allow_cache_entry_mutation=True)

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
            out = checkpoint(run, *args, use_reentrant=False, context_fn=context_fn, **kwargs)
            first = out if isinstance(out, torch.Tensor) else next(
                (t for t in out if isinstance(t, torch.Tensor)), None)
            if first is not None and state.phase is Phase.FORWARD:
                state.uncount_cached(first)
            return out
        # NB: the whole block forward runs again (Megatron's full recomputation), not stopping
        # early once the saved tensors are rebuilt as torch's default does
        with set_checkpoint_early_stop(False):
            return checkpoint(run, *args, use_reentrant=False, **kwargs)

    return call
