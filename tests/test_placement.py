"""Every parallel group placed on the ranks it occupies, checked against brute force.

The oracle lays a plan's ranks out by hand (mixed radix in the placement's order, innermost
first), forms each group from its definition (the ranks that differ only in that axis; the
dp x cp block that holds the same weights; windows of it for ep, its complement and hybrid
sharding), then walks each group's ring hop by hop: which level each hop crosses, how many of
the group's members sit in the domains it leaves and enters, the slowest hop over every group.
Times come from the nccl-tests closed forms written out here. The placement model (closed forms
where all groups are translates, a simulation elsewhere) must give the same figures.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from archcost.cost import kernels as k
from archcost.cost import placement as pl
from archcost.cost.comm import Collective, Group, collective_cost
from archcost.hardware.profile import load_cluster
from archcost.plan.evaluate import plan_groups
from archcost.plan.space import Plan

KINDS = (k.COLL_ALL_REDUCE, k.COLL_ALL_GATHER, k.COLL_REDUCE_SCATTER, k.COLL_ALL_TO_ALL,
         k.COLL_BROADCAST, k.COLL_SEND_RECV)
ORDERS = list(itertools.permutations(("tp", "cp", "dp", "pp")))


# ---------------------------------------------------------------- the oracle ------------------

def coords(sizes: dict, order: tuple) -> list[dict]:
    """Each rank's coordinate on every axis, the first axis of ``order`` varying fastest."""
    world = math.prod(sizes.values())
    out = []
    for r in range(world):
        c, x = {}, r
        for ax in order:
            c[ax] = x % sizes[ax]
            x //= sizes[ax]
        out.append(c)
    return out


def groups_by_definition(sizes: dict, order: tuple, ep: int, sg: int) -> dict[str, list]:
    cs = coords(sizes, order)
    inner, outer = sorted(("cp", "dp"), key=order.index)  # the block's physically inner axis

    def block(c):
        return c[inner] + sizes[inner] * c[outer]

    keys = {
        "tp": lambda c: (c["cp"], c["dp"], c["pp"]), "cp": lambda c: (c["tp"], c["dp"], c["pp"]),
        "pp": lambda c: (c["tp"], c["cp"], c["dp"]), "dp": lambda c: (c["tp"], c["pp"]),
        "ep": lambda c: (c["tp"], c["pp"], block(c) // ep),
        "dp-experts": lambda c: (c["tp"], c["pp"], block(c) % ep),
        "shard": lambda c: (c["tp"], c["pp"], block(c) // sg),
        "replicas": lambda c: (c["tp"], c["pp"], block(c) % sg),
    }
    out = {}
    for name, key in keys.items():
        found: dict = {}
        for r, c in enumerate(cs):
            found.setdefault(key(c), []).append(r)
        out[name] = [sorted(v) for v in found.values()]
    return out


def ring_figures(groups, kind, dom, bw, lat, share):
    """(slowest hop's bandwidth, its latency, outermost hop level, levels used) over every
    group's ring (members in rank order, the last back to the first); all-to-all: the rate of
    the member that sends the most out of its domains."""
    nlev = len(dom)

    def domain(r, lv):
        return r // dom[lv] if dom[lv] else 0

    slow, worst, used = math.inf, 0.0, set()
    for members in groups:
        g = len(members)

        def count(r, lv, members=members):
            return sum(domain(x, lv) == domain(r, lv) for x in members)

        for i, a in enumerate(members):
            b = members[(i + 1) % g]
            hop = next(lv for lv in range(nlev) if domain(a, lv) == domain(b, lv))
            used.add(hop)
            cap = bw[0][kind] if hop == 0 else min(
                (min(share[lv + 1], count(a, lv), count(b, lv)) if kind == k.COLL_SEND_RECV
                 else min(count(a, lv), count(b, lv))) * bw[lv + 1][kind] for lv in range(hop))
            slow = min(slow, cap)
            t = (count(a, 0) - 1) / bw[0][kind]
            for lv in range(nlev - 1):
                if count(a, lv) < g:
                    t = max(t, (g - count(a, lv)) / bw[lv + 1][kind])
            worst = max(worst, t)
    g = len(groups[0])
    rate = (g - 1) / worst if kind == k.COLL_ALL_TO_ALL else slow
    return rate, max(lat[lv][kind] for lv in used), max(used), used


def hierarchical_oracle(groups, dom, bw, lat):
    """(members per node, bandwidth and latency across nodes) when every node holds the same
    number m0 of a group's members (2 <= m0 < g): the m0 rings of one member per node, each
    member on its own share of the links; None otherwise."""
    ar = k.COLL_ALL_REDUCE
    per_node = {sum(1 for x in members if x // dom[0] == r // dom[0])
                for members in groups for r in members}
    g = len(groups[0])
    if len(per_node) != 1 or dom[0] == 0:
        return None
    m0 = per_node.pop()
    if m0 < 2 or m0 >= g or g % m0:
        return None
    rings = []
    for members in groups:
        local = {}
        for r in members:  # k-th member of its node
            local.setdefault(r // dom[0], []).append(r)
        rings += [[v[j] for v in local.values()] for j in range(m0)]
    rate, alpha, _, _ = ring_figures(rings, ar, dom, bw, lat, [1] * len(dom))
    return m0, rate, alpha


def py_time(kind, size, n, alpha, bw):
    """nccl-tests PERFORMANCE.md closed forms; the fastest of ring and (double binary) tree."""
    frac = (n - 1) / n
    if kind == k.COLL_SEND_RECV:
        return size / bw + alpha
    if kind == k.COLL_ALL_REDUCE:
        return min(2 * frac * size / bw + 2 * (n - 1) * alpha,
                   2 * size / bw + 2 * math.ceil(math.log2(n)) * alpha)
    if kind == k.COLL_BROADCAST:
        return min(size / bw + (n - 1) * alpha, size / bw + math.ceil(math.log2(n)) * alpha)
    return frac * size / bw + (n - 1) * alpha


def oracle_seconds(groups, kind, size, dom, bw, lat, share):
    g = len(groups[0])
    rate, alpha, _, _ = ring_figures(groups, kind, dom, bw, lat, share)
    t = py_time(kind, size, 2 if kind == k.COLL_SEND_RECV else g, alpha, rate)
    hier = hierarchical_oracle(groups, dom, bw, lat) if kind == k.COLL_ALL_REDUCE else None
    if hier:
        m0, rate_out, alpha_out = hier
        ar, rs, ag = k.COLL_ALL_REDUCE, k.COLL_REDUCE_SCATTER, k.COLL_ALL_GATHER
        t = min(t, (m0 - 1) / m0 * size / bw[0][rs] + (m0 - 1) * lat[0][rs]
                + py_time(ar, size / m0, g // m0, alpha_out, rate_out)
                + (m0 - 1) / m0 * size / bw[0][ag] + (m0 - 1) * lat[0][ag])
    return t


# ---------------------------------------------------------------- random small clusters -------

def random_cluster(rng):
    gpn = int(rng.choice([2, 4, 6, 8]))
    dom = [gpn, 0] if rng.random() < 0.5 else [gpn, gpn * int(rng.choice([2, 3])), 0]
    nlev = len(dom)
    scale = [rng.uniform(100e9, 900e9), rng.uniform(10e9, 100e9), rng.uniform(5e9, 50e9)]
    bw = np.array([[scale[lv] * rng.uniform(0.5, 1.5) for _ in KINDS] for lv in range(nlev)])
    lat = np.array([[(1 + 2 * lv) * 1e-6 * rng.uniform(0.5, 1.5) for _ in KINDS]
                    for lv in range(nlev)])
    share = np.array([1] + [int(rng.choice([1, 2])) for _ in range(nlev - 1)], dtype=np.int64)
    return np.array(dom, dtype=np.int64), bw, lat, share


def random_plan(rng, gpn):
    while True:
        sizes = {ax: int(rng.choice([1, 1, 2, 2, 3, 4, 6, 8])) for ax in ("tp", "cp", "dp", "pp")}
        world = math.prod(sizes.values())
        if 2 <= world <= 4 * gpn:
            break
    n_dp = sizes["dp"] * sizes["cp"]
    divisors = [d for d in range(1, n_dp + 1) if n_dp % d == 0]
    order = ORDERS[rng.integers(len(ORDERS))]
    return sizes, order, int(rng.choice(divisors)), int(rng.choice(divisors))


def model_figures(group: Group, kind, dom, bw, lat, share):
    m = np.empty(len(dom), dtype=np.int64)
    regular = pl.describe(group.geo, dom, m)
    return pl.figures(kind, group.geo, m, regular, dom, bw, lat, share), regular, m


def test_every_group_of_random_plans_equals_brute_force_over_its_ranks():
    """400 plans on clusters of 2-8 GPUs per node, 2 or 3 link levels, up to 4 nodes, every
    placement: each group's slowest hop, latency, outermost level and levels used, and each
    collective's time, equal the explicit walk of every group's ring."""
    rng = np.random.default_rng(14)
    seen = {0: 0, 1: 0}
    for _ in range(400):
        dom, bw, lat, share = random_cluster(rng)
        sizes, order, ep, sg = random_plan(rng, int(dom[0]))
        plan = Plan(**sizes, ep=ep, gbs=1, placement="-".join(order),
                    hybrid_shard=1 < sg < sizes["dp"] * sizes["cp"],
                    shard_group=sg if 1 < sg < sizes["dp"] * sizes["cp"] else None)
        model = plan_groups(plan)
        truth = groups_by_definition(sizes, order, ep, plan.zero_group)
        for name, members in truth.items():
            group = model[name]
            assert group.size == len(members[0]), (name, sizes, order)
            if group.size < 2:
                continue
            for kind in KINDS:
                (rate, alpha, top, mask), regular, m = model_figures(group, kind, dom, bw,
                                                                    lat, share)
                seen[int(regular)] += 1
                want_rate, want_alpha, want_top, used = ring_figures(members, kind, dom, bw,
                                                                     lat, share)
                where = (name, kind, sizes, order, list(dom), int(regular))
                assert rate == pytest.approx(want_rate, rel=1e-12), where
                assert alpha == want_alpha and top == want_top, where
                assert mask == sum(1 << lv for lv in used), where
                size = float(rng.uniform(1e3, 1e9))
                fig = np.empty(pl.FIG_LEN)
                assert pl.group_figures(group.geo, dom, bw, lat, share, m, fig) == regular
                t, _ = pl.group_seconds(kind, size, group.size, fig)
                want = oracle_seconds(members, kind, size, dom, bw, lat, share)
                if regular or kind != k.COLL_ALL_REDUCE:
                    assert t == pytest.approx(want, rel=1e-9), where
                else:  # NB: a simulated layout is priced flat only
                    assert t >= want * (1 - 1e-9), where
    assert seen[1] > 2000 and seen[0] > 200, seen  # both the closed forms and the simulation


def test_context_parallel_ring_across_two_nodes():
    """cp = 16 consecutive ranks on two 8-GPU nodes: 14 of the ring's 16 hops stay on NVLink,
    2 cross InfiniBand (7 -> 8 and 15 -> 0). A point-to-point step is bounded by one GPU's
    NDR port (50 GB/s); an all-gather over the same ranks has the node's 8 ports (400 GB/s),
    below NVLink's 450 GB/s."""
    c = load_cluster("dgx-h100-ndr", 64)
    g = Group.axis(16, 1, 64)
    hop = collective_cost(Collective.SEND_RECV, 2e6, g, c)
    assert hop.levels == ("nvlink4", "ib-ndr")
    assert hop.bandwidth_bytes_per_s == pytest.approx(50e9)
    assert hop.seconds == pytest.approx(2e6 / 50e9 + 6e-6)
    ag = collective_cost(Collective.ALL_GATHER, 32e6, g, c)
    assert ag.bandwidth_bytes_per_s == pytest.approx(8 * 50e9)
    assert ag.seconds == pytest.approx(15 / 16 * 32e6 / 400e9 + 15 * 6e-6)
    # tp = 8 inside a node stays on NVLink; cp = 2 at stride 8: every GPU on its own port
    assert collective_cost(Collective.ALL_REDUCE, 1e9, Group.axis(8, 1, 64), c).levels == (
        "nvlink4",)
    pair = collective_cost(Collective.SEND_RECV, 2e6, Group.axis(2, 8, 64), c)
    assert pair.levels == ("ib-ndr",) and pair.bandwidth_bytes_per_s == pytest.approx(50e9)


def test_a_flat_ring_over_four_nodes_has_every_nic_of_each_node():
    """4 nodes x 8 GPUs, 8 x 50 GB/s NICs per node: stas00/ml-engineering@744d01e
    network/README.md works a flat-ring 4 GiB all-reduce over the 32 ranks out at 20.8 ms on
    the node's 400 GB/s (22.05 ms measured) and 166 ms on one NIC."""
    c = load_cluster("dgx-h100-ndr", 32)
    size = 4 * 2**30
    cost = collective_cost(Collective.ALL_REDUCE, size, Group.axis(32, 1, 32), c)
    assert cost.bandwidth_bytes_per_s == pytest.approx(400e9)
    ring = 2 * 31 / 32 * size / 400e9
    assert ring == pytest.approx(20.8e-3, rel=0.01)
    assert cost.seconds <= ring + 2 * 31 * 6e-6
    assert cost.seconds == pytest.approx(22.05e-3, rel=0.1)


def test_a_strided_group_has_one_member_per_node():
    """dp = 8 at stride 8 (tp = 8 inside each node): one member per node, every hop on one
    GPU's NIC; an all-to-all over 16 consecutive ranks sends 8/16 of its buffer out of the node
    over that GPU's own port and 7/16 over NVLink."""
    c = load_cluster("dgx-h100-ndr", 64)
    dp = collective_cost(Collective.ALL_GATHER, 1e9, Group.axis(8, 8, 64), c)
    assert dp.levels == ("ib-ndr",) and dp.bandwidth_bytes_per_s == pytest.approx(50e9)
    a2a = collective_cost(Collective.ALL_TO_ALL, 1.6e9, Group.axis(16, 1, 64), c)
    bytes_out = 8 / 16 * 1.6e9
    assert a2a.seconds == pytest.approx(bytes_out / 50e9 + 15 * 6e-6)


def test_a_shared_nic_lets_a_lone_flow_use_the_whole_link():
    """4 NICs for 8 GPUs (gpus_per_link 2, 25 GB/s a GPU): a ring-attention hop that is the only
    one leaving its node may use a whole NIC; with every GPU sending (cp = 2 at stride 8) each
    has its share."""
    import dataclasses

    c = load_cluster("dgx-h100-ndr", 32)
    nic = dataclasses.replace(c.levels[1], bandwidth_per_gpu_bytes_per_s=25e9, gpus_per_link=2)
    c = dataclasses.replace(c, levels=(c.levels[0], nic))
    lone = collective_cost(Collective.SEND_RECV, 1e6, Group.axis(16, 1, 32), c)
    assert lone.bandwidth_bytes_per_s == pytest.approx(50e9)
    every = collective_cost(Collective.SEND_RECV, 1e6, Group.axis(2, 8, 32), c)
    assert every.bandwidth_bytes_per_s == pytest.approx(25e9)


def test_a_72_gpu_domain_under_power_of_two_groups_is_simulated():
    """NVL72 racks and 128 GPUs: the cp group of 8 ranks 4 apart that starts at rank 64 keeps
    2 members (64, 68) in the first rack and 6 in the second: its all-gather leaves the rack on
    2 GPUs' ports (100 GB/s), the slowest of all groups."""
    c = load_cluster("gb200-nvl72", 128)
    g = Group.axis(8, 4, 128)
    dom = np.array([72, 0], dtype=np.int64)
    assert pl.describe(g.geo, dom, np.empty(2, dtype=np.int64)) == 0
    cost = collective_cost(Collective.ALL_GATHER, 1e9, g, c)
    assert cost.bandwidth_bytes_per_s == pytest.approx(2 * 50e9)
    assert cost.levels == ("nvlink5", "ib-ndr")


def test_plan_groups_follow_the_placement():
    """Megatron-LM's order tp-cp-dp-pp on 8-GPU nodes: tp = 8 fills a node, cp = 2 and dp = 2
    are 8 and 16 ranks apart; ep = 2 takes the first two of the dp x cp block (the cp pair)."""
    g = plan_groups(Plan(tp=8, cp=2, dp=2, pp=2, ep=2, gbs=2, placement="tp-cp-dp-pp"))
    assert (g["tp"].size, g["tp"].s1) == (8, 1)
    assert (g["cp"].size, g["cp"].s1, g["pp"].s1) == (2, 8, 32)
    assert (g["dp"].n1, g["dp"].s1, g["dp"].n2, g["dp"].s2, g["dp"].size) == (2, 8, 2, 16, 4)
    assert (g["ep"].size, g["ep"].step, g["dp-experts"].size, g["dp-experts"].step) == (
        2, 1, 2, 2)


# ---------------------------------------------------------------- the examples --------

def _workload(model: str, over: dict, seq: int, runtime: str = "eager"):
    from archcost.loader import load_model_file
    from archcost.options import Recompute
    from archcost.plan.workload import trace_workload
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision
    from tests.conftest import MODELS

    spec = load_model_file(str(MODELS / f"{model}.py"), over)
    return trace_workload(spec, seq, parse_precision("bf16-mixed"), "adamw", (Recompute.NONE,),
                          runtime=load_runtime(runtime))


def test_context_parallel_over_two_nodes_costs_its_internode_hops():
    """Llama-3 70B at 8k, tp=1, pp=4, cp=16 on 64 H100s: the cp group is 16 consecutive ranks
    over two nodes; each ring step waits for the hop on one GPU's NDR port (2 MiB of K,V at
    50 GB/s + 6 us), of which attention hides only its share of the step, in forward (cp - 1
    steps) and backward (K,V and their gradients: twice the bytes). Run as Megatron-Core runs
    it (fused elementwise ops, cuDNN attention), the stack whose ring attention this is."""
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.space import parse_plan

    cm = CostModel(_workload("llama", {"preset": "70b"}, 8192, "megatron"),
                   load_cluster("dgx-h100-ndr", 64))
    est, _ = estimate_plan(parse_plan("tp=1,pp=4,cp=16,zero=2,mbs=1,gbs=512"), cm,
                           with_schedule=False)
    (cp,) = [c for c in est["comm"] if c["group"] == "cp"]
    kv = 2 * 8192 / 16 * 1024 * 2  # K and V of 512 tokens, 8 kv heads x 128, bf16
    assert cp["bytes"] == kv and cp["levels"] == ["nvlink4", "ib-ndr"]
    hop = kv / 50e9 + 6e-6
    assert cp["seconds_each"] == pytest.approx(hop)
    row = dict(zip(("attn_f", "attn_b"), cm.table(np.array([[0, 1, 1, 0, 16, 1]])).rows[0, 3:5]))
    layer = 15 * (max(0.0, hop - row["attn_f"] / 16) + max(0.0, 2 * hop - row["attn_b"] / 16))
    layers = est["ranks"][est["pipeline"]["critical_rank"]]["layers"]
    assert est["components_s"]["cp_comm"] == pytest.approx(512 * layers * layer)
    assert est["components_s"]["cp_comm"] > 0.1 * est["step_time_s"]


def test_llama_405b_search_no_longer_takes_cp_32_across_four_nodes():
    """Llama-3 405B at 8k on 4096 H100s: the plan the search took while cp was free on NVLink
    (dp=2, tp=1, pp=64, cp=32: ring attention over 4 nodes) now pays its inter-node hops and
    loses by over 10%. The best plan keeps cp within two nodes; the best tp=8 plan (what
    Megatron-LM and Llama 3 run) is no slower than it but for its tensor-parallel collectives,
    which this model leaves exposed (Megatron-LM's --tp-comm-overlap and torchtitan's AsyncTP
    hide them); with interleaved chunks one layer apart (126 layers) it is the best plan."""
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.search import search
    from archcost.plan.space import parse_plan

    cm = CostModel(_workload("llama", {"preset": "405b"}, 8192),
                   load_cluster("dgx-h100-ndr", 4096))
    best = search(cm, [4096], 2048, top=1)["plans"][0]
    plan = parse_plan(best["plan"])
    assert plan.cp * plan.tp <= 16
    if plan.cp > 1:  # its ring sends this rank's K,V: 8 KV heads of 128 split over tp, bf16
        (row,) = [c for c in best["estimate"]["comm"] if c["group"] == "cp"]
        assert row["bytes"] == 2 * plan.mbs * 8192 / plan.cp * 8 * 128 / plan.tp * 2
    old, _ = estimate_plan(parse_plan("dp=2,tp=1,pp=64,cp=32,zero=1,mbs=2,gbs=2048"), cm,
                           with_schedule=False)
    assert old["step_time_s"] > 1.1 * best["estimate"]["step_time_s"]
    (cp,) = [c for c in old["comm"] if c["group"] == "cp"]
    assert cp["levels"] == ["nvlink4", "ib-ndr"]
    tp8 = search(cm, [4096], 2048, top=1, fixed=["tp=8"])["plans"][0]["estimate"]
    parts = tp8["components_s"]
    assert tp8["step_time_s"] >= best["estimate"]["step_time_s"]
    assert tp8["step_time_s"] - parts["tp_comm"] < best["estimate"]["step_time_s"]


def test_gpt2_small_on_eight_gpus_runs_data_parallel():
    """GPT-2 small at 1024 tokens on one 8-GPU node: plain data parallelism whenever the batch
    has a sequence per GPU; with 4 sequences, dp=4 and a second axis of 2 inside the node."""
    from archcost.plan.costmodel import CostModel
    from archcost.plan.search import search
    from archcost.plan.space import parse_plan

    cm = CostModel(_workload("gpt2", {}, 1024), load_cluster("dgx-h100-ndr", 8))
    for gbs in (8, 64):
        plan = parse_plan(search(cm, [8], gbs, top=1)["plans"][0]["plan"])
        assert (plan.dp, plan.tp, plan.pp, plan.cp) == (8, 1, 1, 1), plan
    four = search(cm, [8], 4, top=1)["plans"][0]
    plan = parse_plan(four["plan"])
    assert plan.dp == 4 and plan.tp * plan.pp * plan.cp == 2
    assert all(c["levels"] == ["nvlink4"] for c in four["estimate"]["comm"])


@pytest.mark.parametrize("over,tp,per_rank_heads", [
    ({"preset": "70b", "layers": 2}, 8, 1),  # 8 KV heads over tp = 8: one each
    ({"preset": "70b", "layers": 2}, 2, 4),  # over tp = 2: four each
])
def test_context_parallel_sends_this_ranks_share_of_the_kv_heads(over, tp, per_rank_heads):
    """Tensor parallelism splits attention by heads, so a cp rank exchanges the K,V of its own
    KV heads: kv_heads / tp of them (plans keep tp dividing kv_heads). The plan kernel prices
    the same bytes as the full estimate."""
    from archcost.plan import enumerate_plans
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.space import parse_plan
    from tests.test_plan_cost import _kernel_vs_estimate

    s, cp = 256, 2
    w = _workload("llama", over, s)
    head_dim = w.kv_hidden // w.shape.kv_heads
    cm = CostModel(w, load_cluster("dgx-h100-ndr", tp * cp))
    plan = parse_plan(f"tp={tp},cp={cp},sp=1,mbs=1,gbs=4")
    est, _ = estimate_plan(plan, cm, with_schedule=False)
    (row,) = [c for c in est["comm"] if c["group"] == "cp"]
    assert row["bytes"] == 2 * (s // cp) * per_rank_heads * head_dim * 2  # K and V, bf16
    rows = enumerate_plans(w.shape, tp * cp, 4, constraints=[
        f"tp={tp}", f"cp={cp}", "pp=1", "sp=1", "mbs=1", "zero=0", "recompute=none"])
    assert len(rows)
    _kernel_vs_estimate(cm, rows, ("step_s",))
