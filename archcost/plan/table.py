"""Per-layer cost table: the roofline time and activation bytes of one micro-batch through one
layer (and through the pre/post sections) for each (recompute, micro-batch, tp, sp, cp, ep) a
set of plans uses, on one GPU profile.

Plans share few such combinations (a few hundred in a million plans), so the op-level roofline
(``cost.kernels.roofline``, measured efficiency curves and tables at the op's FLOPs and shape
as sharded) runs once per combination and the plan kernel only looks rows up. Attention ops
read the table of the attention kernel named by the caller (``attention_kernel``, by default
the workload's runtime's) at their head dim and, under context parallelism, the s/cp tokens of one ring-attention chunk.
Under expert parallelism a rank holds experts / ep of the stacked experts and computes its
share of the ep group's routed tokens: with balanced routing that is as many tokens as its own
micro-batch routes (the same FLOPs and activation bytes as at ep = 1), on experts / ep weights
(Lepikhin et al. 2020, GShard Sec. 3.1; Megatron-LM's expert-parallel layout), so the ops on
expert weights read (and write the gradients of) 1 / ep of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archcost.cost.compute import (
    CURVE_MATMUL,
    floor_seconds,
    memory_curve_index,
    overhead_seconds,
    peak_flops_for,
    peak_keys,
    roofline_seconds,
    runtime_attention_kernel,
)
from archcost.hardware.sparsity import sparse_speedup
from archcost.options import Recompute
from archcost.plan.workload import (
    PHASE_CODES,
    SECTION_BLOCK,
    SECTION_POST,
    SECTION_PRE,
    OpTable,
    Workload,
)

__all__ = ["COLUMNS", "COMBO_KEYS", "CostTable", "build_table", "op_seconds", "matmul_dims",
           "attention_dims", "overlap_share", "sharded_work"]

# columns of a table row (seconds per micro-batch; bytes per micro-batch per GPU)
COLUMNS = ("block_f", "block_b", "block_rc", "attn_f", "attn_b", "pre_f", "pre_b", "post_f",
           "post_b", "saved_layer", "saved_pre", "saved_post", "transient", "transient_body")
(BLOCK_F, BLOCK_B, BLOCK_RC, ATTN_F, ATTN_B, PRE_F, PRE_B, POST_F, POST_B, SAVED_LAYER, SAVED_PRE,
 SAVED_POST, TRANSIENT, TRANSIENT_BODY) = range(len(COLUMNS))  # njit code reads these as constants
C = {name: i for i, name in enumerate(COLUMNS)}
COMBO_KEYS = ("recompute", "mbs", "tp", "sp", "cp", "ep")


@dataclass(frozen=True)
class CostTable:
    combos: np.ndarray  # int64 [n, 6]: recompute code, mbs, tp, sp, cp, ep
    rows: np.ndarray  # float64 [n, len(COLUMNS)]
    optimizer_s_per_param: float  # optimizer step seconds per parameter held on one GPU


def _peaks(ops: OpTable, gpu) -> np.ndarray:
    """Each op's FLOP/s ceiling; 2:4-sparse GEMMs times the profile's sparse speedup."""
    peak = np.array([peak_flops_for(gpu, dt, bool(tc))
                     for dt, tc in zip(ops.dtype, ops.tensor_core)], dtype=np.float64)
    if ops.sparse is None or not ops.sparse.any():
        return peak
    keys = peak_keys(ops.dtype)
    return peak * np.array([sparse_speedup(gpu, k)[0] if s else 1.0
                            for s, k in zip(ops.sparse, keys)])


_PHASE_NAMES = tuple(sorted(PHASE_CODES, key=PHASE_CODES.__getitem__))  # code -> name


def _phase_names(ops: OpTable, phase: str | None) -> list[str]:
    return [phase] * len(ops.phase) if phase else [_PHASE_NAMES[p] for p in ops.phase]


def _overheads(ops: OpTable, gpu, phase: str | None = None) -> np.ndarray:
    """Per-op overhead: by each op's phase code, or ``phase`` for all of them, once per kernel
    the op launches."""
    return overhead_seconds(gpu, _phase_names(ops, phase)) * ops.kernels


def _floors(ops: OpTable, gpu, phase: str | None = None) -> np.ndarray:
    """Per-op least time (the host's, where it runs ahead of the device), once per kernel."""
    return floor_seconds(gpu, _phase_names(ops, phase)) * ops.kernels


def matmul_dims(ops: OpTable, tokens: np.ndarray, tp: np.ndarray, ep: np.ndarray | None = None
                ) -> np.ndarray:
    """Matmuls' (m, n, k) per (combination, op), flattened as the roofline call's ops: the dims
    that grow with the batch times ``tokens`` (micro-batch / cp); over ``tp``, a batched
    matmul's m (its batch: the attention heads Megatron splits) and a 2-D matmul's largest dim
    the batch does not grow (the weight dim Megatron splits: the MLP's and the heads' width);
    ``tokens``, ``tp`` and ``ep`` are [n, 1] (or [n, n_ops]) per combination. Over ``ep`` an
    expert matmul runs experts / ep GEMMs of ep times the tokens: its m (experts x rows) is
    unchanged where it holds the tokens (forward, input gradient) and divides by ep where it
    does not (the weight gradient, whose k grows ep times instead)."""
    mnk = np.where(ops.mnk_batch, ops.mnk * np.asarray(tokens)[..., None], ops.mnk)
    if ep is not None:
        # experts / ep per rank: m (experts x rows) divides, the token dim grows ep times
        e = np.where(ops.on_experts & ops.batched & ~ops.mnk_batch[:, 0], np.asarray(ep), 1.0)
        mnk = mnk * np.where(ops.mnk_batch, e[..., None], 1.0)
        mnk[..., 0] = mnk[..., 0] / e
    fixed = np.where(ops.mnk_batch, -1.0, ops.mnk)  # the largest dim not grown by the batch
    axis = np.where(ops.batched, 0, fixed.argmax(axis=1))
    split = (np.arange(3) == axis[:, None]) & (ops.mnk[:, 0] > 0)[:, None] & (
        ops.batched | (fixed.max(axis=1) > 0))[:, None]
    return np.where(split, mnk / np.asarray(tp)[..., None], mnk).reshape(-1, 3)


def attention_dims(ops: OpTable, cp: np.ndarray) -> np.ndarray:
    """Attention ops' geometry rows per (combination, op), flattened as the roofline call's
    ops: query and key lengths over ``cp`` ([n, 1] per combination; a ring-attention step
    runs one s/cp chunk of queries against one of keys)."""
    scale = np.ones(5) * np.ones((np.asarray(cp).shape[0], 1, 1))
    scale[:, :, 1:3] = 1.0 / np.asarray(cp, dtype=np.float64)[:, :, None]
    return (ops.attn[None, :, :] * scale).reshape(-1, 5)


def op_seconds(ops: OpTable, gpu, peaks: np.ndarray, scale: np.ndarray,
               phase: str | None = None, attention_kernel: str | None = None) -> np.ndarray:
    """Roofline seconds of every op (all its occurrences) with FLOPs and bytes times ``scale``
    (and the matmuls' batch dims); ``phase`` names the phase of every op (the optimizer
    table's are meaningless); ``attention_kernel``: the attention kernel run."""
    t, _ = roofline_seconds(gpu, ops.flops * scale, ops.nbytes * scale, peaks, ops.curve,
                            memory_curve_index(gpu, ops.memory_keys), _overheads(ops, gpu, phase),
                            ops.slices * scale,
                            matmul_dims(ops, np.asarray(scale, dtype=np.float64)[None, :],
                                        np.ones((1, 1))),
                            peak_keys(ops.dtype), ops.attn, attention_kernel,
                            _floors(ops, gpu, phase))
    return t * ops.count


def overlap_share(runtime, gpu) -> float:
    """Share of the GPU's SMs the runtime's overlapped tensor-parallel communication holds
    while the layer's matmuls run (0 when it does not overlap or the SMs are unknown)."""
    if runtime is None or not runtime.tp_comm_sms or not gpu.sm_count:
        return 0.0
    return min(runtime.tp_comm_sms / gpu.sm_count, 1.0)


def sharded_work(ops: OpTable, combos: np.ndarray) -> tuple[np.ndarray, ...]:
    """One GPU's share of every op per (mbs, tp, sp, cp, ep) of ``combos`` ([n, 5]), each
    [n * n_ops] (``mnk`` [n * n_ops, 3]): (FLOPs, bytes, attention slices, matmul dims)."""
    n = len(combos)
    mbs, tp, sp, cp, ep = (combos[:, i].astype(np.float64)[:, None] for i in range(5))
    tp_div = np.where(ops.sp_only[None, :] & (sp == 0), 1.0, tp)
    scale = (mbs / (tp_div * cp)).ravel()
    # weights: split by tp (expert weights by tp x ep), not by cp or the micro-batch
    w_div = (tp_div * np.where(ops.on_experts[None, :], ep, 1.0)).ravel()
    fixed = np.tile(ops.nbytes_fixed, n)
    nbytes = (np.tile(ops.nbytes, n) - fixed) * scale + fixed / w_div
    # an op on weights alone (its bytes do not grow with the batch: a weight's cast) does the
    # same work at any micro-batch, split as its weights are
    weight_only = np.tile((ops.nbytes > 0) & (ops.nbytes_fixed >= ops.nbytes), n)
    flops = np.tile(ops.flops, n) * np.where(weight_only, 1.0 / w_div, scale)
    # attention's (batch, head) slices grow with the micro-batch and split over tp, not cp
    slices = np.tile(ops.slices, n) * (mbs / tp_div).ravel()
    return flops, nbytes, slices, matmul_dims(ops, mbs / cp, tp_div, ep)


def _rows(w: Workload, ops: OpTable, gpu, peaks, r: Recompute, combos: np.ndarray,
          attention_kernel: str | None = None) -> np.ndarray:
    """Rows for every (mbs, tp, sp, cp, ep) of ``combos`` ([n, 5]) under policy ``r``: one
    roofline call over all combinations x ops (``sharded_work``), then sums by section and
    phase. With tp > 1 the block's matmuls run beside the runtime's overlapped tensor-parallel
    communication, on its share of SMs less (every block matmul neighbours a TP collective: QKV
    and FC1 the all-gather, the output projections the reduce-scatter, and their backward)."""
    n, n_ops = len(combos), len(ops.flops)
    tp, cp = (combos[:, i].astype(np.float64)[:, None] for i in (1, 3))
    beside = (ops.curve == CURVE_MATMUL) & (ops.section == SECTION_BLOCK)
    share = overlap_share(w.runtime, gpu)
    peaks = np.where(beside[None, :] & (tp > 1), peaks[None, :] * (1.0 - share), peaks[None, :])
    flops, nbytes, slices, mnk = sharded_work(ops, combos)
    t, _ = roofline_seconds(gpu, flops, nbytes, peaks.ravel(),
                            np.tile(ops.curve, n),
                            np.tile(memory_curve_index(gpu, ops.memory_keys), n),
                            np.tile(_overheads(ops, gpu), n), slices, mnk,
                            peak_keys(ops.dtype) * n, attention_dims(ops, cp), attention_kernel,
                            np.tile(_floors(ops, gpu), n))
    t = t.reshape(n, n_ops) * ops.count[None, :]
    fwd, bwd, rc = ops.phase == 0, ops.phase == 1, ops.phase == 2
    blk, pre, post = (ops.section == SECTION_BLOCK, ops.section == SECTION_PRE,
                      ops.section == SECTION_POST)
    masks = {"block_f": blk & fwd, "block_b": blk & bwd, "block_rc": blk & rc,
             "attn_f": blk & fwd & ops.attention, "attn_b": blk & bwd & ops.attention,
             "pre_f": pre & fwd, "pre_b": pre & (bwd | rc), "post_f": post & fwd,
             "post_b": post & (bwd | rc)}
    rows = np.zeros((n, len(COLUMNS)))
    for name, mask in masks.items():
        rows[:, C[name]] = t @ mask.astype(np.float64)
    sharded, sp_only = w.saved_block[r]
    mbs, tp, sp, cp = (combos[:, i].astype(np.float64) for i in range(4))  # ep: none of these
    tp_sp = np.where(sp > 0, tp, 1.0)
    rows[:, C["saved_layer"]] = mbs * (sharded / tp + sp_only / tp_sp) / cp
    rows[:, C["saved_pre"]] = mbs * w.saved_pre[r] / (tp_sp * cp)
    rows[:, C["saved_post"]] = mbs * w.saved_post[r] / (tp * cp)
    rows[:, C["transient"]] = mbs * w.transient[r] / (tp * cp)
    rows[:, C["transient_body"]] = mbs * w.transient_body.get(r, w.transient[r]) / (tp * cp)
    return rows


def build_table(w: Workload, gpu, combos: np.ndarray, attention_kernel: str | None = None
                ) -> CostTable:
    """Rows for ``combos`` (int array [n, 6] of recompute code, mbs, tp, sp, cp, ep), as the
    workload's runtime runs its ops (fusion and launches are in the ops); attention ops read
    ``attention_kernel``'s table, by default the runtime's kernel where the profile has its
    table."""
    combos = np.asarray(combos, dtype=np.int64).reshape(-1, len(COMBO_KEYS))
    attention_kernel = attention_kernel or runtime_attention_kernel(gpu, w.runtime)
    rows = np.zeros((len(combos), len(COLUMNS)))
    for code in np.unique(combos[:, 0]):
        r = Recompute.from_code(int(code))
        if r not in w.ops:
            raise KeyError(f"recompute={r.value} was not traced")
        sel = np.flatnonzero(combos[:, 0] == code)
        ops = w.ops[r]
        rows[sel] = _rows(w, ops, gpu, _peaks(ops, gpu), r, combos[sel, 1:], attention_kernel)
    opt = w.optimizer
    opt_s = float(op_seconds(opt, gpu, _peaks(opt, gpu), np.ones(len(opt.flops)),
                             "optimizer").sum()) \
        if len(opt.flops) else 0.0
    return CostTable(combos, rows, opt_s / max(w.trainable_params, 1.0))
