"""The plan kernel: score every plan of a PLAN_DTYPE array in one numba ``prange`` loop.

Per plan: a layer's time per micro-batch from the cost table plus its exposed tensor-, context-
and expert-parallel communication, each group placed on the ranks it occupies
(``cost.placement``, the same functions the full estimate calls); stages from ``partition``; the pipeline's makespan from the
closed form for stages of unequal cost, ``(m - 1/v) * max_r t_r + sum_r t_r / v`` (exactly
``(m + p - 1) t`` and ``m t + (p - 1) t / v`` for equal stages, Narayanan et al. SC'21) plus the
fill and drain sends; the data-parallel gradient and parameter collectives with the part that
cannot hide behind the last micro-batch's backward; the optimizer step on the GPU's shard; and
the peak memory of every pipeline rank (1F1B: rank r holds min(p - r, m) micro-batches in
flight; interleaved: 2(p - r - 1) + (v - 1) p + 1 chunks, Megatron-LM's warm-up; GPipe: all m).

This is the screen of the search. ``evaluate.estimate_plan`` is the full model of one plan (the
pipeline simulated op by op, every collective named); the two agree exactly when the pipeline
has equal stages, and the search re-ranks its best candidates with ``estimate_plan``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from archcost.cost.kernels import (
    COLL_ALL_GATHER,
    COLL_ALL_REDUCE,
    COLL_ALL_TO_ALL,
    COLL_REDUCE_SCATTER,
    COLL_SEND_RECV,
)
from archcost.cost.placement import (
    FIG_LEN,
    GEO_LEN,
    axis_geo,
    block_geo,
    group_figures,
    group_seconds,
)
from archcost.plan.partition import balanced_counts, uniform_counts
from archcost.plan.table import (
    ATTN_B,
    ATTN_F,
    BLOCK_B,
    BLOCK_F,
    BLOCK_RC,
    POST_B,
    POST_F,
    PRE_B,
    PRE_F,
    SAVED_LAYER,
    SAVED_POST,
    SAVED_PRE,
    TRANSIENT,
    TRANSIENT_BODY,
)

__all__ = ["OUT", "OUT_INDEX", "MODEL_KEYS", "score_plans"]

# output columns
OUT = ("step_s", "compute_s", "recompute_s", "tp_comm_s", "cp_comm_s", "ep_comm_s",
       "pp_comm_s", "dp_comm_s", "bubble_s", "optimizer_s", "mem_peak", "mem_states",
       "mem_activations", "mem_transient", "tokens_per_s", "mfu", "hfu", "fits")
OUT_INDEX = {name: i for i, name in enumerate(OUT)}
# model/hardware scalars, one float64 vector
MODEL_KEYS = ("layers", "seq_len", "hidden", "act_bytes", "tp_points", "kv_hidden",
              "dispatch_bytes", "experts", "params_pre", "params_block", "params_post",
              "params_expert_block", "weight_bytes", "grad_bytes", "optimizer_bytes",
              "optimizer_s_per_param", "model_flops_per_seq", "rc_flops_none",
              "rc_flops_selective", "rc_flops_full", "peak_flops", "mem_capacity",
              "overlap_dp", "uniform_stages", "host_link_bw", "host_mem_bw", "cp_all_gather",
              "gather_bytes", "reduce_bytes", "tp_comm_exposed", "held_weight_bytes",
              "overlap_slowdown")
M = {name: i for i, name in enumerate(MODEL_KEYS)}
# constant indices for njit code (numba cannot read dicts)
_O_STEP_S = 0
_O_COMPUTE_S = 1
_O_RECOMPUTE_S = 2
_O_TP_COMM_S = 3
_O_CP_COMM_S = 4
_O_EP_COMM_S = 5
_O_PP_COMM_S = 6
_O_DP_COMM_S = 7
_O_BUBBLE_S = 8
_O_OPTIMIZER_S = 9
_O_MEM_PEAK = 10
_O_MEM_STATES = 11
_O_MEM_ACTIVATIONS = 12
_O_MEM_TRANSIENT = 13
_O_TOKENS_PER_S = 14
_O_MFU = 15
_O_HFU = 16
_O_FITS = 17
_M_LAYERS = 0
_M_SEQ_LEN = 1
_M_HIDDEN = 2
_M_ACT_BYTES = 3
_M_TP_POINTS = 4
_M_KV_HIDDEN = 5
_M_DISPATCH_BYTES = 6
_M_EXPERTS = 7
_M_PARAMS_PRE = 8
_M_PARAMS_BLOCK = 9
_M_PARAMS_POST = 10
_M_PARAMS_EXPERT_BLOCK = 11
_M_WEIGHT_BYTES = 12
_M_GRAD_BYTES = 13
_M_OPTIMIZER_BYTES = 14
_M_OPTIMIZER_S_PER_PARAM = 15
_M_MODEL_FLOPS_PER_SEQ = 16
_M_RC_FLOPS_NONE = 17
_M_RC_FLOPS_SELECTIVE = 18
_M_RC_FLOPS_FULL = 19
_M_PEAK_FLOPS = 20
_M_MEM_CAPACITY = 21
_M_OVERLAP_DP = 22
_M_UNIFORM_STAGES = 23
_M_HOST_LINK_BW = 24
_M_HOST_MEM_BW = 25
_M_CP_ALL_GATHER = 26
_M_GATHER_BYTES = 27  # bytes per parameter of a parameter all-gather
_M_REDUCE_BYTES = 28
_M_TP_COMM_EXPOSED = 29
_M_HELD_WEIGHT_BYTES = 30  # bytes per parameter of unsharded weights (CostModel.held_weight_bytes)
_M_OVERLAP_SLOWDOWN = 31  # compute slowdown beside an overlapped collective (RuntimeProfile)
_OFF_OPTIMIZER, _OFF_ACTIVATIONS = 1, 2
_AX_TP, _AX_CP, _AX_DP, _AX_PP = 0, 1, 2, 3
_GPIPE, _1F1B, _INTERLEAVED = 0, 1, 2
_CHUNK = 512  # plans per parallel work item
_FULL = 2
# the parallel groups a plan places: rows of the per-chunk geometry buffers
_G_TP, _G_CP, _G_PP, _G_DP, _G_SHARD, _G_REPL, _G_EP, _G_DPE = range(8)
_N_GROUPS = 8


@njit(cache=True)
def exposed_beside(comm, compute, slowdown):
    """Seconds a collective of ``comm`` seconds adds to the ``compute`` seconds it overlaps,
    when the compute running beside it is ``slowdown`` slower (its kernels share the GPU's SMs
    and memory with the collective's): where the collective outlasts the compute, the part of
    it that shows past the compute, ``comm - compute``; where the compute outlasts it, the
    time it cost the compute, ``comm x slowdown / (1 + slowdown)``; the larger of the two
    (they meet at ``comm = compute x (1 + slowdown)``). 0 slowdown: ``max(0, comm -
    compute)``."""
    if comm <= 0.0:
        return 0.0
    return max(comm - compute, comm * slowdown / (1.0 + slowdown))


@njit(cache=True)
def _strides(order, tp, cp, dp, pp):
    """Rank stride of each axis (tp, cp, dp, pp) for a placement, innermost first."""
    s_tp = s_cp = s_dp = s_pp = 1
    s = 1
    for j in range(4):
        ax = order[j]
        if ax == _AX_TP:
            s_tp = s
            s *= tp
        elif ax == _AX_CP:
            s_cp = s
            s *= cp
        elif ax == _AX_DP:
            s_dp = s
            s *= dp
        else:
            s_pp = s
            s *= pp
    return s_tp, s_cp, s_dp, s_pp


@njit(cache=True)
def _chunk_peak(r, pp, m, v, c):
    """Megatron's interleaved order on rank ``r`` (schedule._interleaved_order): the most
    forwards of chunk ``c`` whose backward has not run. Forward k runs chunk (k // pp) % v,
    backward j chunk v - 1 - (j // pp) % v; after the warm-up the count repeats every pp * v
    forward/backward pairs, so one period bounds the loop."""
    total = m * v
    warm = min(2 * (pp - r - 1) + (v - 1) * pp, total)
    n = 0
    best = 0
    for k in range(warm):
        if (k // pp) % v == c:
            n += 1
            best = max(best, n)
    for i in range(min(total - warm, pp * v)):
        if ((warm + i) // pp) % v == c:
            n += 1
            best = max(best, n)
        if v - 1 - (i // pp) % v == c:
            n -= 1
    return best


@njit(cache=True)
def _states(params, w_b, held_w_b, g_b, o_b, zero, zg):
    w = params * w_b / zg if zero >= 3 else params * held_w_b
    g = params * g_b / (zg if zero >= 2 else 1)
    o = params * o_b / (zg if zero >= 1 else 1)
    return w + g + o


@njit(cache=True)
def _place_groups(order, tp, cp, dp, pp, ep, zg, geo, m, fig, dom, bw, lat, share):
    """Every group of a plan (rows ``_G_*`` of ``geo``) on its ranks, and its collectives'
    figures into the same rows of ``fig`` (``m``: scratch)."""
    s_tp, s_cp, s_dp, s_pp = _strides(order, tp, cp, dp, pp)
    world = tp * cp * dp * pp
    n_dp = dp * cp
    axis_geo(tp, s_tp, world, geo[_G_TP])
    axis_geo(cp, s_cp, world, geo[_G_CP])
    axis_geo(pp, s_pp, world, geo[_G_PP])
    block_geo(cp, s_cp, dp, s_dp, n_dp, 1, world, geo[_G_DP])
    block_geo(cp, s_cp, dp, s_dp, zg, 1, world, geo[_G_SHARD])
    block_geo(cp, s_cp, dp, s_dp, n_dp // zg, zg, world, geo[_G_REPL])
    block_geo(cp, s_cp, dp, s_dp, ep, 1, world, geo[_G_EP])
    block_geo(cp, s_cp, dp, s_dp, n_dp // ep, ep, world, geo[_G_DPE])
    for i in range(_N_GROUPS):
        if geo[i, 4] > 1:
            group_figures(geo[i], dom, bw, lat, share, m, fig[i])


@njit(cache=True)
def _t(kind, size, i, geo, fig):
    """Seconds of one collective over placed group ``i``."""
    t, _ = group_seconds(kind, size, geo[i, 4], fig[i])
    return t


@njit(cache=True)
def _dp_time(zero, grads, weights, hybrid, whole, inner, replicas, geo, fig):
    """(overlappable with backward, overlappable with forward) seconds of one step's gradient
    and parameter collectives over the placed data-parallel group ``whole``; hybrid: shard
    within group ``inner``, all-reduce across group ``replicas``."""
    if geo[whole, 4] <= 1:
        return 0.0, 0.0
    if zero == 0:
        return _t(COLL_ALL_REDUCE, grads, whole, geo, fig), 0.0
    g = inner if hybrid else whole
    bwd = _t(COLL_REDUCE_SCATTER, grads, g, geo, fig)
    fwd = _t(COLL_ALL_GATHER, weights, g, geo, fig)
    if hybrid and geo[replicas, 4] > 1:
        bwd += _t(COLL_ALL_REDUCE, grads / geo[inner, 4], replicas, geo, fig)
    return bwd, fwd


@njit(parallel=True, cache=True)
def score_plans(dp_a, tp_a, pp_a, cp_a, ep_a, zero_a, hyb_a, sg_a, sp_a, vpp_a, sched_a, mbs_a,
                gbs_a, rc_a, off_a, place_a, m_a, combo, table, model, placements, dom, bw,
                lat, share):
    """Score plans (PLAN_DTYPE columns) -> float64 [n, len(OUT)]; ``combo[i]`` is plan i's row
    of ``table``; ``placements[k]`` the axis order of placement k; ``dom``, ``bw``, ``lat``,
    ``share`` the link levels (``comm.level_arrays``)."""
    n = dp_a.shape[0]
    out = np.zeros((n, len(OUT)))
    L = int(model[_M_LAYERS])
    s = model[_M_SEQ_LEN]
    h = model[_M_HIDDEN]
    ab = model[_M_ACT_BYTES]
    max_k = 1
    max_pp = 1
    for i in range(n):
        max_k = max(max_k, pp_a[i] * vpp_a[i])
        max_pp = max(max_pp, pp_a[i])
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):  # scratch arrays once per chunk, not per plan
        counts_buf = np.empty(max_k, dtype=np.int64)
        rank_t_buf = np.empty(max_pp)
        rank_l_buf = np.empty(max_pp)
        geo = np.empty((_N_GROUPS, GEO_LEN), dtype=np.int64)
        gm = np.empty(dom.shape[0], dtype=np.int64)
        fig = np.empty((_N_GROUPS, FIG_LEN))
        key = np.full(7, -1, dtype=np.int64)  # the plan whose groups are placed in geo
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
                dp, tp, pp, cp, ep = dp_a[i], tp_a[i], pp_a[i], cp_a[i], ep_a[i]
                zero, sp, v, sched, mbs, m = zero_a[i], sp_a[i], vpp_a[i], sched_a[i], mbs_a[i], m_a[i]
                rc = rc_a[i]
                off = off_a[i]
                host_link = model[_M_HOST_LINK_BW]
                host_mem = model[_M_HOST_MEM_BW]
                row = table[combo[i]]
                zg = sg_a[i]
                if (key[0] != tp or key[1] != cp or key[2] != dp or key[3] != pp
                        or key[4] != ep or key[5] != zg or key[6] != place_a[i]):
                    _place_groups(placements[place_a[i]], tp, cp, dp, pp, ep, zg, geo, gm, fig,
                                  dom, bw, lat, share)
                    key[0], key[1], key[2], key[3] = tp, cp, dp, pp
                    key[4], key[5], key[6] = ep, zg, place_a[i]
                # ---- one layer, one micro-batch
                act = mbs * s / cp * h * ab
                tp_f = 0.0
                one = 0.0
                if tp > 1:
                    if sp:
                        one = (_t(COLL_ALL_GATHER, act, _G_TP, geo, fig)
                               + _t(COLL_REDUCE_SCATTER, act, _G_TP, geo, fig))
                    else:
                        one = _t(COLL_ALL_REDUCE, act, _G_TP, geo, fig)
                    tp_f = model[_M_TP_POINTS] * one * model[_M_TP_COMM_EXPOSED]
                tp_layer = 2.0 * tp_f + (tp_f if rc == _FULL else 0.0)
                cp_layer = 0.0
                cp_f = 0.0
                if cp > 1:
                    # this rank's K and V: tensor parallelism splits the KV heads
                    kv = 2.0 * mbs * s / cp * model[_M_KV_HIDDEN] * ab / tp
                    if model[_M_CP_ALL_GATHER] > 0:  # gathered before attention, exposed
                        cp_f = _t(COLL_ALL_GATHER, kv * cp, _G_CP, geo, fig)
                        cp_layer = cp_f + _t(COLL_REDUCE_SCATTER, kv * cp, _G_CP, geo, fig)
                    else:  # ring: each block behind one step's attention
                        hop = _t(COLL_SEND_RECV, kv, _G_CP, geo, fig)
                        cp_f = (cp - 1) * max(0.0, hop - row[ATTN_F] / cp)
                        cp_layer = cp_f + (cp - 1) * max(0.0, 2 * hop - row[ATTN_B] / cp)
                    if rc == _FULL:
                        cp_layer += cp_f
                n_dp = dp * cp
                ep_layer = 0.0
                a2a = 0.0
                if ep > 1 and model[_M_EXPERTS] > 0:
                    d = mbs * model[_M_DISPATCH_BYTES] / cp / (tp if sp else 1)
                    a2a = _t(COLL_ALL_TO_ALL, d, _G_EP, geo, fig)
                    ep_layer = 4.0 * a2a + (2.0 * a2a if rc == _FULL else 0.0)
                comp_layer = row[BLOCK_F] + row[BLOCK_B]
                rc_layer = row[BLOCK_RC]
                off_layer = 0.0
                off_f = 0.0
                if off == _OFF_ACTIVATIONS:  # saved activations stream to host and back behind compute
                    if host_link > 0:
                        x = row[SAVED_LAYER] / host_link
                        off_f = max(0.0, x - row[BLOCK_F])
                        off_layer = off_f + max(0.0, x - row[BLOCK_B] - rc_layer)
                    else:
                        off_layer = np.inf
                layer = comp_layer + rc_layer + tp_layer + cp_layer + ep_layer + off_layer
                emb_tp = one  # vocab-parallel embedding / head: one collective, exposed
                first = row[PRE_F] + row[PRE_B] + emb_tp
                last = row[POST_F] + row[POST_B] + emb_tp
                # ---- stages
                k = pp * v
                counts = counts_buf[:k]
                if model[_M_UNIFORM_STAGES] > 0 or v > 1:
                    uniform_counts(L, k, layer, first, last, counts)
                else:
                    balanced_counts(L, k, layer, first, last, counts)
                rank_t = rank_t_buf[:pp]
                rank_t[:] = 0.0
                rank_layers = rank_l_buf[:pp]
                rank_layers[:] = 0.0
                for j in range(k):
                    r = j % pp
                    rank_layers[r] += counts[j]
                    rank_t[r] += counts[j] * layer + (first if j == 0 else 0.0) + (last if j == k - 1
                                                                                  else 0.0)
                t_max = 0.0
                r_max = 0
                for r in range(pp):
                    if rank_t[r] > t_max:
                        t_max = rank_t[r]
                        r_max = r
                p2p = 0.0
                if pp > 1:
                    msg = act / (tp if sp else 1)
                    p2p = _t(COLL_SEND_RECV, msg, _G_PP, geo, fig)
                makespan = (m - 1.0 / v) * t_max + rank_t.sum() / v + 2.0 * (pp - 1) * p2p
                # ---- data parallel, per rank: params held (dense / tp, experts / (tp * ep))
                hybrid = hyb_a[i] == 1
                pe = model[_M_PARAMS_EXPERT_BLOCK]
                zg_e = max(1, n_dp // ep)
                pb = model[_M_PARAMS_BLOCK] - pe
                worst_dp = 0.0
                worst_opt = 0.0
                mem_peak = 0.0
                mem_states_at = 0.0
                mem_act_at = 0.0
                mem_trans_at = 0.0
                cached_nl = -1.0
                cached_dp = 0.0
                layer_f = row[BLOCK_F] + tp_f + cp_f + 2.0 * a2a + off_f  # forward's share
                layer_b = layer - layer_f
                for r in range(pp):
                    nl = rank_layers[r]
                    dense = nl * pb + (model[_M_PARAMS_PRE] if r == 0 else 0.0) + \
                        (model[_M_PARAMS_POST] if r == pp - 1 else 0.0)
                    dense /= tp
                    expert = nl * pe / (tp * ep)
                    if r == 0 or r == pp - 1 or nl != cached_nl:
                        bwd, fwd = _dp_time(zero, dense * model[_M_REDUCE_BYTES],
                                            dense * model[_M_GATHER_BYTES], hybrid, _G_DP,
                                            _G_SHARD, _G_REPL, geo, fig)
                        if pe > 0 and ep > 1:
                            b2, f2 = _dp_time(zero, expert * model[_M_REDUCE_BYTES],
                                              expert * model[_M_GATHER_BYTES], False, _G_DPE,
                                              _G_DPE, _G_DPE, geo, fig)
                            bwd += b2
                            fwd += f2
                        elif pe > 0:
                            b2, f2 = _dp_time(zero, expert * model[_M_REDUCE_BYTES],
                                              expert * model[_M_GATHER_BYTES], hybrid, _G_DP,
                                              _G_SHARD, _G_REPL, geo, fig)
                            bwd += b2
                            fwd += f2
                        if zero == 3:
                            # every micro-batch gathers each layer's parameters before its forward and again
                            # before its backward, and reduce-scatters its gradients after; each hides
                            # behind the neighbouring layer's compute except the first gather and last reduce
                            ag_l = fwd / max(nl, 1.0)
                            rs_l = bwd / max(nl, 1.0)
                            slow = model[_M_OVERLAP_SLOWDOWN]
                            exposed = (exposed_beside(ag_l, layer_f, slow)
                                       + exposed_beside(ag_l + rs_l, layer_b, slow))
                            dp_t = m * nl * exposed + ag_l + rs_l
                        elif (int(model[_M_OVERLAP_DP]) >> zero) & 1:  # mask over ZeRO stages
                            # gradients reduce during the last micro-batch's backward; ZeRO's parameter
                            # gather after the step hides behind the next step's first forward
                            slow = model[_M_OVERLAP_SLOWDOWN]
                            dp_t = (exposed_beside(bwd, nl * layer_b, slow)
                                    + exposed_beside(fwd, nl * layer_f, slow))
                        else:
                            dp_t = bwd + fwd
                        if 0 < r < pp - 1:
                            cached_nl = nl
                            cached_dp = dp_t
                    else:  # a middle rank like the last one computed
                        dp_t = cached_dp
                    if dp_t > worst_dp:
                        worst_dp = dp_t
                    zshard = zg if zero >= 1 else 1
                    zshard_e = (zg_e if ep > 1 else zg) if zero >= 1 else 1
                    shard = dense / zshard + expert / zshard_e
                    opt = shard * model[_M_OPTIMIZER_S_PER_PARAM]
                    if off == _OFF_OPTIMIZER:  # ZeRO-Offload: gradients down, step on CPU, weights up
                        if host_link > 0 and host_mem > 0:
                            down = shard * model[_M_GRAD_BYTES] / host_link
                            cpu = shard * (2 * model[_M_OPTIMIZER_BYTES] + model[_M_GRAD_BYTES]
                                           + model[_M_WEIGHT_BYTES]) / host_mem
                            opt = max(0.0, down - nl * layer_b) + cpu + shard * model[
                                _M_WEIGHT_BYTES] / host_link
                        else:
                            opt = np.inf
                    if opt > worst_opt:
                        worst_opt = opt
                    # memory of this rank
                    o_b = 0.0 if off == _OFF_OPTIMIZER else model[_M_OPTIMIZER_BYTES]
                    # gradients are held in the wider of their dtype and the reduce dtype
                    # (CostModel.held_grad_bytes)
                    g_b = max(model[_M_GRAD_BYTES], model[_M_REDUCE_BYTES])
                    w_b, held_w_b = model[_M_WEIGHT_BYTES], model[_M_HELD_WEIGHT_BYTES]
                    states = _states(dense, w_b, held_w_b, g_b, o_b, zero, zg) + \
                        _states(expert, w_b, held_w_b, g_b, o_b, zero,
                                zshard_e if zero >= 1 else 1)
                    if pp == 1:
                        units = 1.0
                        unit_layers = nl
                    elif sched == _GPIPE:
                        units = m
                        unit_layers = nl
                    elif sched == _INTERLEAVED:
                        units = min(m * v, 2 * (pp - r - 1) + (v - 1) * pp + 1)
                        unit_layers = nl / v
                    else:
                        units = min(pp - r, m)
                        unit_layers = nl
                    held = units * unit_layers
                    if off == _OFF_ACTIVATIONS:  # the layer computing and the one prefetched
                        held = min(held, 2.0)
                    # first section: held by its chunk's forwards in flight only; the head and
                    # loss: one micro-batch unless GPipe
                    pre_u = units
                    if pp > 1 and sched == _INTERLEAVED:
                        pre_u = _chunk_peak(0, pp, m, v, 0)
                    act_b = held * row[SAVED_LAYER] + (pre_u * row[SAVED_PRE] if r == 0 else 0.0)
                    if r == pp - 1:
                        act_b += (units if pp > 1 and sched == _GPIPE else 1.0) * row[SAVED_POST]
                    trans = row[TRANSIENT] if r == pp - 1 else row[TRANSIENT_BODY]
                    total = states + act_b + trans
                    if zero == 3:  # memory.zero3_buffer_bytes, inlined for numba
                        outside = ((model[_M_PARAMS_PRE] if r == 0 else 0.0) + (
                            model[_M_PARAMS_POST] if r == pp - 1 else 0.0)) / tp
                        total += pb / tp * (3.0 * model[_M_WEIGHT_BYTES] + model[_M_REDUCE_BYTES]) + (
                            outside * 2.0 * model[_M_WEIGHT_BYTES])
                    if total > mem_peak:
                        mem_peak = total
                        mem_states_at = states
                        mem_act_at = act_b
                        mem_trans_at = trans
                step = makespan + worst_dp + worst_opt
                o = out[i]
                o[_O_STEP_S] = step
                o[_O_COMPUTE_S] = m * (rank_layers[r_max] * comp_layer + (
                    row[PRE_F] + row[PRE_B] if r_max == 0 else 0.0) + (
                    row[POST_F] + row[POST_B] if r_max == pp - 1 else 0.0))
                o[_O_RECOMPUTE_S] = m * rank_layers[r_max] * rc_layer
                o[_O_TP_COMM_S] = m * (rank_layers[r_max] * tp_layer + (emb_tp if r_max == 0 else 0.0)
                                         + (emb_tp if r_max == pp - 1 else 0.0))
                o[_O_CP_COMM_S] = m * rank_layers[r_max] * cp_layer
                o[_O_EP_COMM_S] = m * rank_layers[r_max] * ep_layer
                o[_O_PP_COMM_S] = 2.0 * (pp - 1) * p2p
                o[_O_BUBBLE_S] = makespan - m * t_max - 2.0 * (pp - 1) * p2p
                o[_O_DP_COMM_S] = worst_dp
                o[_O_OPTIMIZER_S] = worst_opt
                o[_O_MEM_PEAK] = mem_peak
                o[_O_MEM_STATES] = mem_states_at
                o[_O_MEM_ACTIVATIONS] = mem_act_at
                o[_O_MEM_TRANSIENT] = mem_trans_at
                gbs = gbs_a[i]
                o[_O_TOKENS_PER_S] = gbs * s / step
                gpus = dp * tp * pp * cp
                mf = model[_M_MODEL_FLOPS_PER_SEQ] * gbs
                o[_O_MFU] = mf / (step * gpus * model[_M_PEAK_FLOPS])
                o[_O_HFU] = (mf + model[_M_RC_FLOPS_NONE + rc] * gbs) / (
                    step * gpus * model[_M_PEAK_FLOPS])
                o[_O_FITS] = 1.0 if mem_peak <= model[_M_MEM_CAPACITY] else 0.0
    return out
