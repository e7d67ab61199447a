"""The full cost of one plan: every collective named with its group, link level, size and exposed
time; the pipeline simulated op by op (``schedule.simulate``) with its bubble and in-flight
micro-batches; memory per pipeline rank; step time, tokens/s, MFU and HFU.

Pure Python over ``comm.collective_cost`` (each group placed on the ranks it occupies,
``placement``) and the cost table, written apart from the plan kernel
so the two check each other (they agree exactly when pipeline stages are equal).

Per layer and micro-batch (Megatron-LM's collectives, Shoeybi et al. 2019; Korthikanti et al.
2022): tensor parallel all-reduces the activation after each row-parallel projection in forward
and backward (sequence parallel: all-gather + reduce-scatter instead; full recompute repeats the
forward's); context parallel either passes K and V around the ring (``cp_comm=p2p``,
Megatron-LM / Transformer Engine: cp - 1 sends in forward, K,V and their gradients in backward,
each behind one step's attention, exposing only what that step does not cover) or all-gathers
them before attention and reduce-scatters their gradients after (``all_gather``, Llama 3,
Dubey et al. 2024 Sec. 3.3.2: exposed); MoE layers all-to-all their tokens to the experts and back in each pass. Pipeline
stages send the activation (its sequence-parallel shard) forward and its gradient back. Data
parallel (over dp x cp ranks): all-reduce of gradients (ZeRO-0), reduce-scatter of gradients and
all-gather of updated weights (ZeRO-1/2), or both per micro-batch and layer (ZeRO-3/FSDP).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archcost.cost.comm import Collective, Group, collective_cost
from archcost.cost.memory import zero3_buffer_bytes
from archcost.errors import PlanError
from archcost.options import Recompute
from archcost.plan.costmodel import CostModel
from archcost.plan.kernel import exposed_beside
from archcost.plan.partition import balanced_counts, uniform_counts
from archcost.plan.rules import validate
from archcost.plan.schedule import ScheduleResult, simulate
from archcost.plan.space import Axis, Offload, Plan, Schedule
from archcost.plan.table import COLUMNS

__all__ = ["estimate_plan", "plan_groups", "COMPONENTS"]

COMPONENTS = ("compute", "recompute", "tp_comm", "cp_comm", "ep_comm", "pp_comm", "bubble",
              "dp_comm", "optimizer")


def _strides(plan: Plan) -> dict[Axis, int]:
    sizes = {Axis.TP: plan.tp, Axis.CP: plan.cp, Axis.DP: plan.dp, Axis.PP: plan.pp}
    out, s = {}, 1
    for ax in plan.placement:
        out[ax] = s
        s *= sizes[ax]
    return out


def plan_groups(plan: Plan) -> dict[str, Group]:
    """Every parallel group of ``plan`` on the ranks it occupies: tp, cp and pp (one axis each),
    dp (the dp x cp ranks that hold the same weights), its hybrid-sharding shard and replica
    groups, ep (the first ep ranks of that block, Megatron-LM's "tp-cp-ep-dp-pp") and
    dp-experts (every ep-th: the ranks that hold the same experts)."""
    st = _strides(plan)
    world = plan.gpus
    block = ((plan.cp, st[Axis.CP]), (plan.dp, st[Axis.DP]))
    n_dp, zg, ep = plan.dp * plan.cp, plan.zero_group, plan.ep
    return {
        "tp": Group.axis(plan.tp, st[Axis.TP], world),
        "cp": Group.axis(plan.cp, st[Axis.CP], world),
        "pp": Group.axis(plan.pp, st[Axis.PP], world),
        "dp": Group.block(block, n_dp, 1, world),
        "shard": Group.block(block, zg, 1, world),
        "replicas": Group.block(block, n_dp // zg, zg, world),
        "ep": Group.block(block, ep, 1, world),
        "dp-experts": Group.block(block, n_dp // ep, ep, world),
    }


class _Comm:
    """Collects every collective of the step: per group, kind, size, count and exposure."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.rows: list[dict[str, Any]] = []

    def time(self, name: str, kind: Collective, size: float, group: Group, per_step: float,
             note: str = "") -> float:
        cost = collective_cost(kind, size, group, self.cluster)
        if group.size > 1 and size > 0 and per_step > 0:
            self.rows.append({
                "group": name, "collective": kind.value, "bytes": float(size),
                "ranks": int(group.size), "levels": list(cost.levels),
                "algorithm": cost.algorithm, "bandwidth_bytes_per_s": cost.bandwidth_bytes_per_s,
                "seconds_each": cost.seconds, "per_step": float(per_step), "note": note,
            })
        return cost.seconds


def estimate_plan(plan: Plan, cm: CostModel, *, with_schedule: bool = True
                  ) -> tuple[dict[str, Any], ScheduleResult | None]:
    """(the ``estimate`` document of ``plan``, the simulated schedule or None when pp = 1)."""
    w = cm.workload
    cluster = cm.cluster
    reasons = validate(plan, w.shape, plan.gpus)
    if reasons:
        raise PlanError(f"plan {plan.to_string()} is invalid: " + "; ".join(reasons))
    if plan.gpus > cluster.gpus:
        raise PlanError(f"plan needs {plan.gpus} GPUs but cluster {cluster.name} is sized to "
                        f"{cluster.gpus}: size the cluster to dp*tp*pp*cp GPUs")
    if plan.recompute not in w.ops:
        raise PlanError(f"recompute={plan.recompute.value} was not traced: trace it or fix "
                        "recompute to a traced policy")
    host_link = cm.gpu.host_link_bw_bytes_per_s or 0.0
    host_mem = cm.gpu.host_memory_bw_bytes_per_s or 0.0
    off_opt = plan.offload is Offload.OPTIMIZER
    off_act = plan.offload is Offload.ACTIVATIONS
    if (off_opt and not (host_link and host_mem)) or (off_act and not host_link):
        raise PlanError(f"offload={plan.offload.value}: GPU profile {cm.gpu.name} has no "
                        "host_link_bandwidth/host_memory_bandwidth; add them or use offload=none")
    tp, cp, dp, pp, ep, v, m, mbs = (plan.tp, plan.cp, plan.dp, plan.pp, plan.ep, plan.vpp,
                                     plan.num_microbatches, plan.mbs)
    sp = int(plan.sp)
    full = plan.recompute is Recompute.FULL
    table = cm.table(np.array([[plan.recompute.code, mbs, tp, sp, cp, ep]]))
    row = dict(zip(COLUMNS, table.rows[0]))
    groups = plan_groups(plan)
    comm = _Comm(cluster)
    g_tp = groups["tp"]
    s, h = w.seq_len, w.hidden
    act = mbs * s / cp * h * w.act_bytes

    # ---- one layer, one micro-batch: forward and backward, with exposed communication
    tp_f = one = 0.0
    if tp > 1:
        if sp:
            ag = comm.time("tp", Collective.ALL_GATHER, act, g_tp, 0)
            rs = comm.time("tp", Collective.REDUCE_SCATTER, act, g_tp, 0)
            one = ag + rs
            passes = w.tp_points * (3 if full else 2) * m
            comm.time("tp", Collective.ALL_GATHER, act, g_tp, passes * w.layers / pp,
                      "sequence parallel, per row-parallel projection and pass")
            comm.time("tp", Collective.REDUCE_SCATTER, act, g_tp, passes * w.layers / pp,
                      "sequence parallel, per row-parallel projection and pass")
        else:
            one = comm.time("tp", Collective.ALL_REDUCE, act, g_tp,
                            w.tp_points * (3 if full else 2) * m * w.layers / pp,
                            "per row-parallel projection and pass")
        tp_f = w.tp_points * one * cm.tp_comm_exposed  # what the runtime leaves exposed
    tp_b = tp_f + (tp_f if full else 0.0)
    cp_f = cp_b = 0.0
    if cp > 1:
        g_cp = groups["cp"]
        # this rank's K and V: tensor parallelism splits the KV heads (tp divides kv_heads)
        kv = 2.0 * mbs * s / cp * w.kv_hidden * w.act_bytes / tp
        if cm.cp_comm == "all_gather":
            cp_f = comm.time("cp", Collective.ALL_GATHER, kv * cp, g_cp,
                             (2 if full else 1) * m * w.layers / pp,
                             "K,V of the whole sequence before attention (exposed)")
            cp_b = comm.time("cp", Collective.REDUCE_SCATTER, kv * cp, g_cp, m * w.layers / pp,
                             "K,V gradients after attention's backward (exposed)")
            cp_b += cp_f if full else 0.0
        else:
            hop = comm.time("cp", Collective.SEND_RECV, kv, g_cp,
                            (cp - 1) * (4 if full else 3) * m * w.layers / pp,
                            "ring attention K,V blocks, each behind one step's attention "
                            "(backward: twice the bytes)")
            cp_f = (cp - 1) * max(0.0, hop - row["attn_f"] / cp)
            cp_b = (cp - 1) * max(0.0, 2 * hop - row["attn_b"] / cp) + (cp_f if full else 0.0)
    ep_f = ep_b = 0.0
    if ep > 1 and w.shape.experts > 0:
        d = mbs * w.dispatch_bytes / cp / (tp if sp else 1)
        a2a = comm.time("ep", Collective.ALL_TO_ALL, d, groups["ep"],
                        (6 if full else 4) * m * w.layers / pp, "token dispatch and combine")
        ep_f = 2 * a2a
        ep_b = 2 * a2a + (2 * a2a if full else 0.0)
    off_f = off_b = 0.0
    if off_act:  # each layer's saved activations go to host in forward, come back in backward
        x = row["saved_layer"] / host_link
        off_f = max(0.0, x - row["block_f"])
        off_b = max(0.0, x - row["block_b"] - row["block_rc"])
    layer_f = row["block_f"] + tp_f + cp_f + ep_f + off_f
    layer_b = row["block_b"] + row["block_rc"] + tp_b + cp_b + ep_b + off_b
    emb = one  # vocab-parallel embedding / head: one collective, not overlapped
    pre_f, pre_b = row["pre_f"] + emb, row["pre_b"]
    post_f, post_b = row["post_f"], row["post_b"] + emb

    # ---- stages and the pipeline
    k = pp * v
    counts = np.empty(k, dtype=np.int64)
    layer = layer_f + layer_b
    if cm.uniform_stages or v > 1:
        uniform_counts(w.layers, k, layer, pre_f + pre_b, post_f + post_b, counts)
    else:
        balanced_counts(w.layers, k, layer, pre_f + pre_b, post_f + post_b, counts)
    fwd = counts * layer_f
    bwd = counts * layer_b
    fwd[0] += pre_f
    bwd[0] += pre_b
    fwd[-1] += post_f
    bwd[-1] += post_b
    p2p = 0.0
    sched: ScheduleResult | None = None
    if pp > 1:
        msg = act / (tp if sp else 1)
        p2p = comm.time("pp", Collective.SEND_RECV, msg, groups["pp"], 2 * m * v,
                        "activation forward, its gradient back, per micro-batch and chunk")
        sched = simulate(plan.schedule, pp, m, fwd, bwd, v=v, p2p_s=p2p)
        makespan = sched.makespan_s
        in_flight = sched.peak_in_flight
    else:
        makespan = m * float(fwd[0] + bwd[0])
        in_flight = (1,)
    rank_layers = np.zeros(pp)
    rank_busy = np.zeros(pp)
    for j in range(k):
        rank_layers[j % pp] += counts[j]
        rank_busy[j % pp] += fwd[j] + bwd[j]
    crit = int(np.argmax(rank_busy))

    # ---- data parallel and optimizer, memory: per pipeline rank
    n_dp = dp * cp
    zero = int(plan.zero)
    zg = plan.zero_group
    pe = w.params_expert_block
    pb = w.params_block - pe
    zg_e = max(1, n_dp // ep)
    g_dp = groups["dp"]
    dense_groups = ((g_dp, groups["shard"], groups["replicas"]) if plan.hybrid_shard
                    else (g_dp, g_dp, None))
    expert_groups = (groups["dp-experts"],) * 2 + (None,) if ep > 1 else dense_groups
    ranks = []
    slow = cm.overlap_slowdown  # compute beside an overlapped collective runs this much slower
    for r in range(pp):
        nl = rank_layers[r]
        dense = (nl * pb + (w.params_pre if r == 0 else 0.0)
                 + (w.params_post if r == pp - 1 else 0.0)) / tp
        expert = nl * pe / (tp * ep)
        grads_b = (dense + expert) * w.grad_bytes
        weights_b = (dense + expert) * w.weight_bytes
        rec = r == crit  # record the critical rank's collectives
        bwd_c = fwd_c = 0.0
        groups = [("dp", dense, dense_groups)]
        if pe > 0:
            groups.append(("dp-experts", expert, expert_groups))
        for tag, params, (whole, inner, replicas) in groups:
            if whole.size <= 1 or params <= 0:
                continue
            per = m if zero == 3 else 1
            g_bytes, w_bytes = params * cm.reduce_bytes, params * cm.gather_bytes
            if zero == 0:
                bwd_c += _coll(comm, rec, tag, Collective.ALL_REDUCE, g_bytes, whole, 1,
                               "gradients")
                continue
            bwd_c += _coll(comm, rec, tag, Collective.REDUCE_SCATTER, g_bytes, inner, per,
                           "gradients")
            fwd_c += _coll(comm, rec, tag, Collective.ALL_GATHER, w_bytes, inner,
                           2 * per if zero == 3 else 1,
                           "parameters before forward and backward" if zero == 3 else
                           "updated parameters after the step")
            if replicas is not None and replicas.size > 1:
                bwd_c += _coll(comm, rec, tag, Collective.ALL_REDUCE, g_bytes / inner.size,
                               replicas, 1, "across shard-group replicas")
        if zero == 3:
            ag_l, rs_l = fwd_c / max(nl, 1.0), bwd_c / max(nl, 1.0)
            exposed = (exposed_beside(ag_l, layer_f, slow)
                       + exposed_beside(ag_l + rs_l, layer_b, slow))
            dp_t = m * nl * exposed + ag_l + rs_l
        elif cm.overlaps_dp(zero):
            dp_t = (exposed_beside(bwd_c, nl * layer_b, slow)
                    + exposed_beside(fwd_c, nl * layer_f, slow))
        else:
            dp_t = bwd_c + fwd_c
        zshard = zg if zero >= 1 else 1
        zshard_e = (zg_e if ep > 1 else zg) if zero >= 1 else 1
        shard = dense / zshard + expert / zshard_e
        opt_t = shard * table.optimizer_s_per_param
        if off_opt:  # ZeRO-Offload: gradients to host behind backward, CPU step, weights back
            down = shard * w.grad_bytes / host_link
            cpu = shard * (2 * w.optimizer_bytes + w.grad_bytes + w.weight_bytes) / host_mem
            opt_t = max(0.0, down - nl * layer_b) + cpu + shard * w.weight_bytes / host_link
        # memory
        states = {}
        for part, per_param in (("weights", w.weight_bytes if zero >= 3 else cm.held_weight_bytes),
                                ("gradients", cm.held_grad_bytes),
                                ("optimizer_states", 0.0 if off_opt else w.optimizer_bytes)):
            level = {"weights": 3, "gradients": 2, "optimizer_states": 1}[part]
            states[part] = (dense * per_param / (zg if zero >= level else 1)
                            + expert * per_param / (zshard_e if zero >= level else 1))
        if pp == 1:
            units, unit_layers = 1, nl
        elif plan.schedule is Schedule.INTERLEAVED:
            units, unit_layers = in_flight[r], nl / v
        else:
            units, unit_layers = in_flight[r], nl
        held = min(units * unit_layers, 2.0) if off_act else units * unit_layers
        # the first section lives in the first rank's first chunk: under interleaving only that
        # chunk's forwards in flight hold it (NB: each chunk's peak taken alone, an upper bound
        # within one chunk of layers); the head and loss are held by the last stage's
        # micro-batches in flight: 1F1B and interleaved 1F1B run each one's backward right
        # after its forward there, GPipe holds all m
        pre_units = units
        if sched is not None and plan.schedule is Schedule.INTERLEAVED:
            pre_units = sched.chunk_peak_in_flight(0, 0)
        post_units = 1 if pp == 1 or plan.schedule is not Schedule.GPIPE else units
        acts = held * row["saved_layer"] + ((pre_units * row["saved_pre"] if r == 0 else 0.0)
                                            + (post_units * row["saved_post"] if r == pp - 1
                                               else 0.0))
        outside = ((w.params_pre if r == 0 else 0.0) + (w.params_post if r == pp - 1 else 0.0)) / tp
        # the head and loss's working tensors are the last stage's
        transient = row["transient" if r == pp - 1 else "transient_body"] + (
            zero3_buffer_bytes(pb / tp, outside, w.weight_bytes, cm.reduce_bytes) if zero == 3
            else 0.0)
        total = sum(states.values()) + acts + transient
        ranks.append({
            "rank": r, "layers": int(nl), "micro_batches_in_flight": int(units),
            "params": dense + expert, "memory_bytes": {**states, "activations": acts,
                                                       "transient": transient, "total": total},
            "dp_comm_exposed_s": dp_t, "optimizer_s": opt_t, "busy_s": float(rank_busy[r]),
            "grad_bytes": grads_b, "weight_bytes": weights_b,
        })
    dp_exposed = max(rk["dp_comm_exposed_s"] for rk in ranks)
    opt_s = max(rk["optimizer_s"] for rk in ranks)
    step = makespan + dp_exposed + opt_s
    peak_rank = max(ranks, key=lambda rk: rk["memory_bytes"]["total"])
    nl = rank_layers[crit]
    m_f = float(m)
    parts = {
        "compute": m_f * (nl * (row["block_f"] + row["block_b"])
                          + (row["pre_f"] + row["pre_b"] if crit == 0 else 0.0)
                          + (row["post_f"] + row["post_b"] if crit == pp - 1 else 0.0)),
        "recompute": m_f * nl * row["block_rc"],
        "tp_comm": m_f * (nl * (tp_f + tp_b) + (emb if crit == 0 else 0.0)
                          + (emb if crit == pp - 1 else 0.0)),
        "cp_comm": m_f * nl * (cp_f + cp_b),
        "ep_comm": m_f * nl * (ep_f + ep_b),
        "pp_comm": 2.0 * (pp - 1) * p2p,
    }
    parts["bubble"] = makespan - m_f * float(rank_busy[crit]) - parts["pp_comm"]
    parts["dp_comm"] = dp_exposed
    parts["optimizer"] = opt_s
    peak = cm.peak_flops
    model_flops = w.ops[plan.recompute].model_flops * plan.gbs
    rc_flops = w.ops[plan.recompute].recompute_flops * plan.gbs
    cap = float(cm.gpu.mem_bytes)
    doc = {
        "plan": {**_plan_fields(plan), "gpus": plan.gpus, "num_microbatches": m},
        "hardware": {"cluster": cluster.name, "gpu": cm.gpu.name},
        "runtime": cm.runtime.name,
        "step_time_s": step,
        "tokens_per_s": plan.gbs * s / step,
        "mfu": model_flops / (step * plan.gpus * peak),
        "hfu": (model_flops + rc_flops) / (step * plan.gpus * peak),
        "peak_flops_per_s": peak,
        "memory_bytes": {"peak_per_gpu": peak_rank["memory_bytes"]["total"],
                         "capacity_per_gpu": cap, "usable_per_gpu": cm.usable_bytes,
                         "peak_rank": peak_rank["rank"],
                         **{k: peak_rank["memory_bytes"][k] for k in
                            ("weights", "gradients", "optimizer_states", "activations",
                             "transient")}},
        "fits": bool(peak_rank["memory_bytes"]["total"] <= cm.usable_bytes),
        "components_s": parts,
        "comm": sorted(comm.rows, key=lambda c: -c["seconds_each"] * c["per_step"]),
        "pipeline": {
            "schedule": plan.schedule.value, "stages": pp, "virtual_stages": v,
            "layers_per_stage": [int(c) for c in counts], "micro_batches": m,
            "makespan_s": makespan, "critical_rank": crit,
            "bubble_fraction": parts["bubble"] / (m_f * float(rank_busy[crit]))
            if rank_busy[crit] else 0.0,
            "partition": "uniform" if (cm.uniform_stages or v > 1) else "balanced",
            "method": "simulated op by op" if sched is not None else "sequential micro-batches",
        },
        "ranks": ranks,
        # the critical rank's forward and backward (recompute included) over the step
        "phases_s": {"forward": m_f * float(fwd[[j for j in range(k) if j % pp == crit]].sum()),
                     "backward": m_f * float(bwd[[j for j in range(k) if j % pp == crit]].sum()),
                     "optimizer": opt_s},
        "model_flops_per_step": model_flops,
        "tp_collectives_per_layer": w.tp_points,
    }
    return doc, sched if with_schedule else None


def _coll(comm: _Comm, record: bool, name: str, kind: Collective, size: float, group: Group,
          per_step: float, note: str) -> float:
    if record:
        return comm.time(name, kind, size, group, per_step, note)
    return collective_cost(kind, size, group, comm.cluster).seconds


def _plan_fields(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Plan.__dataclass_fields__:
        value = getattr(plan, name)
        if isinstance(value, bool) or value is None or isinstance(value, int) and not hasattr(
                value, "value"):
            out[name] = value
        elif isinstance(value, tuple):
            out[name] = "-".join(a.value for a in value)
        elif hasattr(value, "value"):
            out[name] = value.value if not isinstance(value.value, int) else int(value)
    return out
