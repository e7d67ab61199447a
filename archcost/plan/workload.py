"""What a parallel plan needs to know about a model, read once from its traced graph.

A plan never re-traces (DESIGN.md): the model is traced at one sequence per micro-batch for each
recomputation policy the search considers, and everything a plan changes is a rescaling of those
traces. The step splits into three sections along the pipeline:

- ``pre``: ops before the main repeated block (embeddings) — on the first pipeline stage;
- ``block``: one member of the main repeated group (a transformer layer), counted ``layers`` times
  (groups of one stack, whose layers differ in a setting: their mean layer);
- ``post``: ops after it (final norm, head, loss) — on the last stage.

Backward ops are placed by execution order (autograd runs post, blocks, pre). Each op carries
how it shards under tensor parallelism, after Megatron-LM (Shoeybi et al. 2019; Korthikanti et
al. 2022): matmul, attention and every op on a wider-than-hidden tensor (MLP activations,
attention scores, vocabulary logits) divide by ``tp``; ops on hidden-width tensors (norms,
residual adds, dropout after the projections) are replicated unless sequence parallel splits
them too. Context parallel divides every op of the step by ``cp`` (each rank owns ``s/cp``
tokens; ring attention computes ``1/cp`` of the score matrix per rank). Traced costs are per
sequence and scale linearly with the micro-batch, as the symbolic fits confirm for the bundled
models (FLOPs, bytes and saved bytes are degree 1 in b).

NB: a model with several repeated groups (encoder and decoder stacks) pipelines the largest one;
the others travel with the first or last stage. Experts are recognised as 3-D parameters of the
block stacked over experts (E, in, out); experts held in a ModuleList are not.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import networkx as nx
import numpy as np

from archcost.cost.compute import (
    BATCHED_MATMULS,
    TENSOR_CORE_CLASSES,
    curve_for,
    op_attention,
    op_curve_key,
    op_dtype,
    op_mnk,
    op_slices,
)
from archcost.cost.fused_saves import apply_saves, fused_saves
from archcost.cost.fusion import executed_graph, prologue_nodes
from archcost.cost.memory import liveness_arrays
from archcost.options import Recompute
from archcost.plan.space import ModelShape
from archcost.runtime import RuntimeProfile, load_runtime
from archcost.trace.precision import ITEMSIZE, PrecisionPolicy
from archcost.trace.records import iter_tensors
from archcost.trace.rules_base import out_of_place

__all__ = ["SECTION_PRE", "SECTION_BLOCK", "SECTION_POST", "PHASE_CODES", "OpTable",
           "Workload", "workload_from_traces", "trace_workload"]

SECTION_PRE, SECTION_BLOCK, SECTION_POST = 0, 1, 2
PHASE_CODES = {"forward": 0, "backward": 1, "recompute": 2}
_MATMULS = frozenset({"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.matmul",
                      "aten.linear", "aten._scaled_mm", "aten._grouped_mm",
                      "aten._scaled_grouped_mm"})
_LOWP = "archcost_lowp."  # low-precision casts: on a weight, each tensor-parallel rank casts its shard


@dataclass(frozen=True)
class OpTable:
    """The ops of one traced step (one sequence per micro-batch) outside the optimizer, per
    occurrence; block ops are one layer's. Struct of arrays in execution order."""

    section: np.ndarray  # int8: SECTION_*
    phase: np.ndarray  # int8: PHASE_CODES
    curve: np.ndarray  # int64: efficiency curve (cost.compute.curve_for)
    op: tuple[str, ...]  # aten op names
    dtype: tuple[str, ...]  # what the op computes in (cost.compute.op_dtype): picks the peak
    tensor_core: np.ndarray  # bool: runs at the tensor-core peak of its dtype
    flops: np.ndarray  # float64
    nbytes: np.ndarray  # float64, read + written
    # float64, the part of nbytes that does not grow with the micro-batch (weights read, weight
    # gradients written): bytes(b) = (nbytes - fixed) * b + fixed; zeros when unknown
    nbytes_fixed: np.ndarray
    count: np.ndarray  # float64, occurrences per layer (block) or per step (pre/post)
    sp_only: np.ndarray  # bool: replicated across tp unless sequence parallel (hidden-width)
    attention: np.ndarray  # bool: attention core (what ring attention overlaps with)
    slices: np.ndarray  # float64, attention ops' (batch, head) slices per sequence; 0 otherwise
    # [n, 3] float64: matmuls' (m, n, k) at one sequence (bmm: (b*m, n, k)), zeros for other
    # ops; [n, 3] bool: which of them grow with the micro-batch (its tokens), from the trace at
    # batch 2; [n] bool: batched matmuls (their m holds the batch: heads, which tp splits)
    mnk: np.ndarray
    mnk_batch: np.ndarray
    batched: np.ndarray
    # [n, 5] float64: attention ops' head dim, query and key length, causal, backward; zeros
    # for other ops (cost.compute.op_attention)
    attn: np.ndarray
    model_flops: float  # forward + backward FLOPs per sequence, whole model, no recompute
    recompute_flops: float  # per sequence, whole model
    # kernels each op launches as the runtime runs it (0 inside a fused group, a fraction for a
    # multi-tensor optimizer op); None: one each
    launches: np.ndarray | None = None
    # bool: block ops that read stacked expert weights or write their gradients (their fixed
    # bytes split over the expert-parallel ranks, each holding experts / ep); None: none.
    # NB: known from the fixed bytes, so only where a batch-2 trace split them
    expert: np.ndarray | None = None
    # bool: GEMMs on a 2:4-sparse operand (run at the profile's sparse speedup,
    # hardware.sparsity); None: none
    sparse: np.ndarray | None = None
    # bool: aten calls the runtime dispatches that carry no work (views and metadata ops: no
    # FLOPs, no bytes, not inside a fused kernel); the roofline gives them no time, eager
    # Python pays their dispatch (``infer.price``); None: none
    dispatch_only: np.ndarray | None = None
    # each op's key among the per-op memory curves of a calibrated profile
    # (cost.compute.op_curve_key); empty: its name
    curve_key: tuple[str, ...] = ()
    # [n, 3] float64: grouped GEMMs over stacked weights (a mixture of experts' grouped GEMM,
    # ``trace.rules_matmul.grouped_weights``): the groups, one sequence's rows over them and
    # every group's weight bytes (in nbytes_fixed); zeros for other ops. A step reads the
    # weights of the groups its rows reach (``infer.price``). None: none
    groups: np.ndarray | None = None

    @property
    def memory_keys(self) -> tuple[str, ...]:
        """Each op's key among the per-op memory curves (``cost.compute.memory_curve_index``):
        ``curve_key``, else (a table built by hand) the op names."""
        return self.curve_key or self.op

    @property
    def kernels(self) -> np.ndarray:
        return np.ones(len(self.flops)) if self.launches is None else self.launches

    @property
    def on_experts(self) -> np.ndarray:
        return np.zeros(len(self.flops), dtype=bool) if self.expert is None else self.expert


@dataclass(frozen=True)
class Workload:
    """Per-sequence costs of a model at one sequence length, per recompute policy."""

    name: str
    shape: ModelShape
    precision: str
    compute_dtype: str
    seq_len: int
    ops: Mapping[Recompute, OpTable]
    optimizer: OpTable  # the optimizer step's ops (section/phase meaningless), whole model
    # parameters (elements) by where they live
    params_pre: float
    params_block: float  # one layer
    params_post: float
    params_expert_block: float  # of params_block: stacked expert weights (split by ep)
    trainable_params: float
    # bytes per parameter
    weight_bytes: float
    grad_bytes: float
    optimizer_bytes: float  # optimizer states + fp32 master weights, per trainable parameter
    # activations per sequence
    saved_block: Mapping[Recompute, tuple[float, float]]  # (divided by tp, sp-only) one layer
    saved_pre: Mapping[Recompute, float]
    saved_post: Mapping[Recompute, float]
    transient: Mapping[Recompute, float]  # working memory that dies within its phase
    # communication facts per sequence
    hidden: int
    act_bytes: int  # bytes per activation element (compute dtype)
    # TP collectives per layer per pass (row-parallel projections); a stack of groups that
    # differ in them: their mean
    tp_points: float
    kv_hidden: int  # kv_heads * head_dim: what ring attention sends per token (K and V each)
    dispatch_bytes: float  # per sequence per MoE layer: tokens sent to experts (one all-to-all)
    notes: tuple[str, ...] = field(default_factory=tuple)
    # TP collectives per pass of the layers outside the main stack (DeepSeek-V3's dense layers
    # before its MoE layers, a lone layer of another shape), all of them: inference pricing
    # adds them; training's does not read them yet
    tp_points_outside: float = 0.0
    # the fewest KV heads an attention kernel of the step reads as stored, as the runtime runs
    # it (``cost.fusion``'s ``kv_heads``: a grouped cache's heads; a latent cache expanded per
    # query head reads the query heads); 0: no attention kernel
    attention_kv_heads: int = 0
    # bytes of one main-stack layer's weights that every tensor-parallel rank holds whole (the
    # weight matmuls the layout keeps replicated: a router, a latent down-projection), as held
    whole_weight_bytes: float = 0.0
    # ... and of the layers outside the main stack (DeepSeek-V3's dense layers), all of them
    whole_weight_bytes_outside: float = 0.0
    # what the GEMMs run in (PrecisionPolicy.gemm_dtype: its peak prices MFU); "" = compute_dtype
    gemm_dtype: str = ""
    # the transient peak outside the head and loss (what a pipeline stage without them holds:
    # the loss's logits-wide working tensors are the last stage's); empty: ``transient``
    transient_body: Mapping[Recompute, float] = field(default_factory=dict)
    # the transient peak by micro-batch b, where the step was traced at batch 2 too: the upper
    # envelope of lines (fixed, per sequence), peak(b) = max(fixed + b * per_seq) (a weight-only
    # quantized linear's dequantized weight is fixed; ``transient_at``); empty: ``transient``
    # grows with b (training's pricing reads it so)
    transient_lines: Mapping[Recompute, tuple[tuple[float, float], ...]] = field(
        default_factory=dict)
    # bytes per parameter a parameter all-gather moves: the weights in their own dtype
    # (``gather_bytes``; 0 = weight_bytes) or, with low precision, the converted linears' weights
    # in its format, scales included (``lowp_gather_bytes``); weight_bytes also counts the
    # low-precision weight caches and scaling state
    gather_bytes: float = 0.0
    lowp_gather_bytes: float = 0.0
    runtime: RuntimeProfile | None = None  # the stack traced for (None: the default runtime)
    # forward nn.Module calls of the step (pre, one layer, post), counted as the ops are
    module_calls: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def layers(self) -> int:
        return self.shape.layers

    @property
    def params(self) -> float:
        return self.params_pre + self.layers * self.params_block + self.params_post


def _ordered(g: nx.DiGraph) -> list[tuple[int, dict]]:
    return sorted(g.nodes(data=True), key=lambda kv: kv[1]["index"])


def _main_group(cap) -> tuple[tuple[str, ...], list[str], int, dict[str, int]]:
    """(representatives, member paths, layers, count of each representative) of the largest
    stack: the repeated groups of one block (members of one container alike in class and
    parameter shapes), which are one group unless their members differ in a setting (Gemma 2's
    sliding and global layers: two groups, one stack). Layers of other shapes (DeepSeek-V3's
    dense layers before its MoE layers) are another stack."""
    stacks: dict[str, list[tuple[str, dict]]] = {}
    for rep, info in cap.repeat_groups.items():
        stacks.setdefault(info.get("block") or rep, []).append((rep, info))
    best = None
    for groups in stacks.values():
        layers = sum(int(info["count"]) for _, info in groups)
        key = (layers, -len(groups[0][0]))
        if best is None or key > best[0]:
            best = (key, groups, layers)
    if best is None:
        return (), [], 1, {}
    _, groups, layers = best
    members = [m for rep, info in groups for m in info.get("member_paths", [rep])]
    return (tuple(rep for rep, _ in groups), members, layers,
            {rep: int(info["count"]) for rep, info in groups})


def _in_group(module: str, members: list[str]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in members)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _sections(nodes: list[tuple[int, dict]], rep: tuple[str, ...]) -> dict[int, int]:
    """Section of each non-optimizer node: block ops by their group, others by position."""
    in_block = {n: bool(rep) and (d["repeat_group"] or "").startswith(rep) for n, d in nodes}
    out: dict[int, int] = {}
    for phase_set, before, after in ((("forward",), SECTION_PRE, SECTION_POST),
                                     (("backward", "recompute"), SECTION_POST, SECTION_PRE)):
        idx = [d["index"] for n, d in nodes if d["phase"] in phase_set and in_block[n]]
        lo, hi = (min(idx), max(idx)) if idx else (None, None)
        for n, d in nodes:
            if d["phase"] not in phase_set:
                continue
            if in_block[n] or not rep:
                out[n] = SECTION_BLOCK
            elif lo is None or d["index"] < lo:
                out[n] = before
            elif d["index"] > hi:
                out[n] = after
            else:  # an op of another group (or the root) between blocks: keep it with the first
                out[n] = before
    return out


def _hidden(nodes, sections) -> tuple[int, int]:
    """(hidden width, elements per sequence) of the block's output: its last forward op."""
    for n, d in reversed(nodes):
        if d["phase"] == "forward" and sections.get(n) == SECTION_BLOCK and d["out_shapes"]:
            shape = d["out_shapes"][0]
            return int(shape[-1]) if shape else 1, _numel(shape)
    for _, d in nodes:  # no block: the model input width
        if d["phase"] == "forward" and d["out_shapes"] and d["out_shapes"][0]:
            return int(d["out_shapes"][0][-1]), _numel(d["out_shapes"][0])
    return 1, 1


_CONST_OPS = frozenset({"aten.t", "aten.view", "aten.permute", "aten.transpose", "aten.expand",
                        "aten._to_copy", "aten.detach", "aten.alias", "aten.ones", "aten.zeros",
                        "aten.arange", "aten.full", "aten.empty", "aten.tril", "aten.triu",
                        "aten.scalar_tensor", "aten.lift_fresh", "aten.clone",
                        "aten.unsqueeze", "aten.slice", "aten.select", "aten.reshape"})


def _tp_layout(g: nx.DiGraph, nodes, sections, hidden: int, sum_partials: bool = False
               ) -> tuple[set[int], float, float, set[int]]:
    """Which forward ops hold tensor-parallel shards, and how many row-parallel projections
    the block's layers run and the ops outside the block (layers of other shapes) run
    (Megatron-LM's layout, found from the dataflow; each counted as many times as its node
    stands for: the block's divided by the layers are the collectives a layer runs, whatever
    groups the stack holds). Only the block's shards are read for its ops' costs; outside it
    the layout counts the collectives alone.

    A weight matmul (one activation input; the other a parameter or its view) on a replicated
    input is column-parallel: its output is sharded. On a sharded input with a hidden-width
    output it is row-parallel: partial sums all-reduced into a replicated output (one TP
    collective per pass). Every other op is sharded when any activation input is, and so is
    what an attention reads of the KV cache through ops on state alone. Integer and
    boolean inputs (indices, a grouped GEMM's offsets, masks) carry no shard; a router (a
    matmul whose scores pick experts, ``topk``) is replicated, as Megatron-LM keeps it, so the
    experts' grouped GEMMs split as an MLP's linears do; so is a projection to one value a
    token (Qwen2-MoE's shared-expert gate, which TensorRT-LLM builds with tp_size 1), and so
    is a latent down-projection normalized whole (``_normed_whole``). Those weight matmuls run
    whole on every rank: the fourth set returned.

    ``sum_partials`` (a runtime's ``tp_sum_partials``): a row-parallel output is a partial sum
    until an op that is not linear in it; partial sums added together (a MoE layer's routed and
    shared experts, a parallel block's attention and MLP) are all-reduced once, after the sum.
    """
    const: set[int] = set()
    for n, d in nodes:
        if d["phase"] != "forward":
            continue
        preds = list(g.predecessors(n))
        if (not preds and (d["op"] in _CONST_OPS or d["op"].startswith(_LOWP))) or (
                preds and all(u in const for u in preds)):
            const.add(n)
    # a weight's low-precision cast runs on each rank's shard of the weight
    sharded: set[int] = {n for n in const if sections.get(n) == SECTION_BLOCK
                         and g.nodes[n]["op"].startswith(_LOWP)}
    points = {True: 0.0, False: 0.0}  # in the block, outside it
    whole: set[int] = set()  # weight matmuls on a replicated input kept replicated
    partial: dict[int, int] = {}  # a partial sum's node -> its all-reduce (sum_partials)
    joined: dict[int, int] = {}  # all-reduces merged into another one
    for n, d in nodes:
        if d["phase"] != "forward" or n in const:
            continue
        block = sections.get(n) == SECTION_BLOCK
        acts = [u for u in g.predecessors(n) if u not in const
                and not _integral(g.edges[u, n].get("dtype", ""))]
        from_shard = any(u in sharded for u in acts)
        if d["op"] in _MATMULS and len(acts) == 1:
            width = d["out_shapes"][0][-1] if d["out_shapes"] and d["out_shapes"][0] else 0
            if from_shard and width == hidden:
                points[block] += d["count"]  # row-parallel: replicated after the all-reduce
                if sum_partials:
                    partial[n] = n
            elif from_shard or not (_routes(g, n) or width == 1
                                    or (0 < width < hidden and _normed_whole(g, n))):
                sharded.add(n)  # column-parallel, or a further projection of a shard
            else:
                whole.add(n)
        elif from_shard:
            sharded.add(n)
        elif sum_partials and acts:
            # a partial sum read by another op too is all-reduced where it is made (an op that
            # reads only its shape, new_zeros, does not count); zeros pass as a partial sum
            live = [u in partial and all(v == n or g.nodes[v]["op"] in _SHAPE_ONLY
                                         for v in g.successors(u)) for u in acts]
            zeros = [g.nodes[u]["op"] in _ZEROS for u in acts]
            if any(live) and _linear_in(d["op"], [a or z for a, z in zip(live, zeros)]):
                first, *rest = sorted({_root(joined, partial[u])
                                       for u, p in zip(acts, live) if p})
                for r in rest:  # partial sums added: one all-reduce after the sum
                    joined[r] = first
                    points[block] -= d["count"]
                partial[n] = first
    # the KV cache is split by heads as the keys and values written into it: what an attention
    # reads of it through ops on state alone (a slice of the cache, its cast, the copies of a
    # KV head to its query heads) holds each GPU's heads
    for n, d in nodes:
        if d["phase"] != "forward" or sections.get(n) != SECTION_BLOCK or \
                d["op_class"] != "attention" or n not in sharded:
            continue
        stack = [u for u in g.predecessors(n) if u in const]
        while stack:
            u = stack.pop()
            if u in sharded or sections.get(u) != SECTION_BLOCK or \
                    _integral((g.nodes[u]["out_dtypes"] or [""])[0]):
                continue
            sharded.add(u)
            stack += [p for p in g.predecessors(u) if p in const]
    return sharded, points[True], points[False], whole


# ops linear in their partial-sum inputs: the sum of their outputs over the ranks is their
# output on the summed inputs (a replicated operand of a product or an index is a constant)
_PASS_PARTIAL = frozenset({"aten.view", "aten._unsafe_view", "aten.reshape", "aten.clone",
                           "aten.contiguous", "aten.expand", "aten.unsqueeze", "aten.squeeze",
                           "aten.transpose", "aten.permute", "aten.t", "aten.slice",
                           "aten.select", "aten._to_copy", "aten.index_select", "aten.index",
                           "aten.gather", "aten.sum", "aten.neg"})
_SCALE_PARTIAL = frozenset({"aten.mul"})  # by a replicated operand
_SHAPE_ONLY = frozenset({"aten.new_zeros", "aten.new_empty", "aten.new_ones", "aten.new_full",
                         "aten.zeros_like", "aten.empty_like", "aten.ones_like",
                         "aten.full_like"})  # read their input's shape, not its values
_ZEROS = frozenset({"aten.new_zeros", "aten.zeros_like", "aten.zeros"})
# a replicated term of a sum is added once, after the all-reduce (x + attn + mlp: one)
_ADD_PARTIAL = frozenset({"aten.add", "aten.sub", "aten.index_add", "aten.scatter_add"})
_JOIN_PARTIAL = frozenset({"aten.cat", "aten.stack"})  # every piece a partial sum


def _linear_in(op: str, partial: list[bool]) -> bool:
    """Whether ``op`` keeps a partial sum partial, given which activation inputs are."""
    op = out_of_place(op)  # in place as out of place
    if op in _PASS_PARTIAL or op in _ADD_PARTIAL:
        return True
    if op in _SCALE_PARTIAL:
        return sum(partial) == 1
    return op in _JOIN_PARTIAL and all(partial)


def _root(joined: dict[int, int], r: int) -> int:
    while r in joined:
        r = joined[r]
    return r


def _integral(dtype: str) -> bool:
    return dtype == "bool" or "int" in dtype


def _ahead(g: nx.DiGraph, n: int, depth: int, through):
    """The ops within ``depth`` steps after ``n``, nearest first, each step taking the
    successors ``through(node data)`` accepts."""
    frontier = [n]
    for _ in range(depth):
        frontier = [v for u in frontier for v in g.successors(u) if through(g.nodes[v])]
        yield from frontier


def _routes(g: nx.DiGraph, n: int, depth: int = 4) -> bool:
    """Whether matmul ``n``'s output picks experts: a ``topk`` within ``depth`` ops after it
    (a softmax, a cast, a bias between), through no other matmul."""
    return any(d["op"] == "aten.topk" for d in (g.nodes[v] for v in _ahead(
        g, n, depth, lambda d: d["phase"] == "forward" and d["op"] not in _MATMULS)))


_TOKEN_MAJOR = frozenset({"aten.view", "aten._unsafe_view", "aten.reshape", "aten._to_copy",
                          "aten.split_with_sizes", "aten.split", "aten.slice"})


def _normed_whole(g: nx.DiGraph, n: int, depth: int = 4) -> bool:
    """Whether matmul ``n``'s output (or a split of it) is normalized whole, a token at a time
    (a norm module's ops within ``depth`` token-major views, casts and splits of it, the
    tokens as many as its rows: not heads): a latent down-projection (DeepSeek's q_a_proj and
    kv_a_proj_with_mqa, RMSNorm-ed before their up-projections) that Megatron-Core builds
    ``duplicated`` and TensorRT-LLM's MLA without a tensor-parallel mode, each rank computing
    it whole (a shard could not be normalized without its rows' other parts)."""
    classes = g.graph.get("module_classes", {})

    def rows(d: dict) -> int:  # tokens: not heads
        shape = d["out_shapes"][0] if d["out_shapes"] else []
        return _numel(shape) // max(1, shape[-1]) if shape else 0

    def normed(d: dict) -> bool:
        return "Norm" in classes.get(d["module"], "")

    tokens = rows(g.nodes[n])
    return any(normed(g.nodes[v]) for v in _ahead(
        g, n, depth, lambda d: rows(d) == tokens > 0 and (normed(d) or d["op"] in _TOKEN_MAJOR)))


_COPIES = frozenset({"aten.view", "aten._unsafe_view", "aten.reshape", "aten.clone",
                     "aten.expand", "aten.unsqueeze", "aten.contiguous", "aten.transpose"})


def _unrepeated(records, t) -> int:
    """Elements of ``t`` before any copies and expands made it (K/V heads repeated to every
    query head before attention are the model's KV heads, sent as such by context parallel)."""
    made = {o.tid: rec for rec in records for o in rec.outputs}
    numel, seen = t.numel, set()
    rec = made.get(t.tid)
    while rec is not None and rec.op in _COPIES and rec.index not in seen:
        seen.add(rec.index)
        src = rec.args[0] if rec.args and hasattr(rec.args[0], "numel") else None
        if src is None:
            break
        numel = min(numel, src.numel)
        rec = made.get(src.tid)
    return numel


def _attention_facts(records, rep: tuple[str, ...], hidden: int,
                     seq_len: int = 0) -> tuple[int, int]:
    """(query heads, kv hidden) from the first attention of the block: a fused kernel's
    inputs, an explicit attention's square score matrix, or the softmax over its scores (a
    decode step's one query row). ``seq_len``: the step's tokens a sequence; a kernel's
    query rows a whole multiple of them, on as many heads as the keys, fold the query heads
    of each KV head into its rows (Falcon's grouped and multi-query attention: (batch,
    kv heads, heads / kv heads x tokens, head dim))."""
    for rec in records:
        if rec.phase.value != "forward" or (rep and not (rec.repeat_group or "").startswith(rep)):
            continue
        if "scaled_dot_product" in rec.op or "attention" in rec.op.split(".")[-1]:
            q, k = rec.named.get("query"), rec.named.get("key")
            if q is not None and k is not None and len(q.shape) == 4 and len(k.shape) == 4:
                # the keys' own tokens: a decode step's one query attends to the whole cache
                tokens = int(k.shape[0]) * int(k.shape[2])
                heads, rows = int(q.shape[1]), int(q.shape[2])
                if seq_len > 0 and rows > seq_len and rows % seq_len == 0 \
                        and heads == int(k.shape[1]):
                    heads *= rows // seq_len  # query heads folded into the rows
                return heads, _unrepeated(records, k) // max(tokens, 1)
        if rec.op in ("aten.bmm", "aten.matmul") and len(rec.outputs) == 1:
            shape = rec.outputs[0].shape  # explicit attention: scores (b*heads, s, s)
            if len(shape) == 3 and shape[1] == shape[2] and shape[1] > 1:
                heads = int(shape[0])
                return heads, hidden
            if len(shape) == 4 and shape[2] == shape[3] and shape[2] > 1:
                return int(shape[1]), hidden
        if rec.op in ("aten._softmax", "aten._safe_softmax") and len(rec.outputs) == 1:
            shape = rec.outputs[0].shape  # explicit attention's probabilities, any query count
            if len(shape) == 3 and shape[2] > 1:  # (b*heads, q, k), traced at batch 1
                return int(shape[0]), hidden
            if len(shape) == 4 and shape[3] > 1:  # (b, heads, q, k)
                return int(shape[1]), hidden
    return 0, hidden


def _pairs(g1: nx.DiGraph, g2: nx.DiGraph | None) -> list[tuple[int, dict, dict]]:
    """Each node of ``g1`` (batch 1) with its twin in ``g2`` (the same step at batch 2): the
    longest matching runs of (op, phase), so an op that only one batch size runs (the batch-sum
    of a broadcast parameter's gradient) leaves the rest paired; empty without a second trace."""
    if g2 is None:
        return []
    n1, n2 = _ordered(g1), _ordered(g2)
    return [(n1[i][0], n1[i][1], n2[k][1]) for i, k in _matched(
        [(d["op"], d["phase"]) for _, d in n1], [(d["op"], d["phase"]) for _, d in n2])]


def _matched(a: Sequence, b: Sequence) -> list[tuple[int, int]]:
    """Index pairs of ``a`` and ``b`` in their longest matching runs (difflib's)."""
    match = difflib.SequenceMatcher(None, list(a), list(b), autojunk=False)
    return [(i + j, k + j) for i, k, size in match.get_matching_blocks() for j in range(size)]


def _fixed_bytes(pairs: list[tuple[int, dict, dict]]) -> dict[int, float]:
    """Per paired node at batch 1, the bytes that do not grow with the batch (bytes are a*b +
    c: c = 2 bytes(1) - bytes(2), within [0, bytes(1)]); a grouped GEMM's without the weights
    of the groups its rows reached (which grow with the batch until every group is reached:
    ``_op_table`` holds them apart)."""
    out = {}
    for n, a, b in pairs:
        one = a["bytes_read"] + a["bytes_written"] - _reached_weights(a)
        two = b["bytes_read"] + b["bytes_written"] - _reached_weights(b)
        out[n] = float(min(max(2 * one - two, 0), one))
    return out


def _reached_weights(d: dict) -> float:
    """The weight bytes a grouped GEMM node read: the groups its rows reached (0 for other
    nodes; ``trace.graph``'s ``grouped``)."""
    grouped = d.get("grouped") or ()
    return grouped[2] * grouped[3] / grouped[0] if grouped else 0.0


def _mnk_growth(pairs: list[tuple[int, dict, dict]]) -> dict[int, tuple[bool, bool, bool]]:
    """Per matmul node, which of (m, n, k) grow with the batch (they double at batch 2);
    without a second trace none are known to, and the one-sequence shape is kept."""
    out = {}
    for n, a, b in pairs:
        one, two = op_mnk(a), op_mnk(b)
        if one[0] > 0 and two[0] > 0:
            out[n] = tuple(y > 1.5 * x for x, y in zip(one, two))
    return out


def _expert_ops(cap, rep: tuple[str, ...], members: list[str]) -> frozenset[int]:
    """Indices of the block's records that read a stacked expert weight (a 3-D parameter of
    the block, or a view of it) or, in backward, write a tensor of its shape (its gradient, or
    an activation gradient of that shape: ``_op_table`` keeps those with fixed bytes). A
    parameter is a storage some op reads before any op has made it."""
    shapes: set[tuple[int, ...]] = set()
    for p in cap.params:
        if not p.is_buffer and members and _in_group(p.module, members) and len(p.shape) == 3:
            e, a, b = (int(x) for x in p.shape)
            shapes |= {(e, a, b), (e, b, a)}
    if not shapes:
        return frozenset()
    made: set[int] = set()
    leaves: set[int] = set()
    out: set[int] = set()
    for rec in cap.records:
        reads = list(iter_tensors((rec.args, rec.kwargs)))
        leaves.update(t.storage for t in reads if t.storage not in made)
        if (rec.repeat_group or "").startswith(rep) and rec.phase.value != "optimizer" and (
                any(t.storage in leaves and tuple(t.shape) in shapes for t in reads)
                or (rec.phase.value != "forward"
                    and any(tuple(o.shape) in shapes for o in rec.outputs))):
            out.add(rec.index)
        made.update(o.storage for o in rec.outputs)
    return frozenset(out)


def _op_table(g: nx.DiGraph, rep: tuple[str, ...], layers: int, width_numel: int, hidden: int,
              pairs: list[tuple[int, dict, dict]], expert_ops: frozenset[int] = frozenset()
              ) -> tuple[OpTable, OpTable]:
    """The step's ops and the optimizer's, from ``g`` as the runtime executes it (bytes and
    kernels of fused groups and of multi-tensor optimizer ops, ``cost.fusion``);
    ``expert_ops``: the record indices of ops on stacked expert weights (``_expert_ops``)."""
    nodes = _ordered(g)
    sections = _sections(nodes, rep)
    sharded, _, _, whole = _tp_layout(g, nodes, sections, hidden)
    cols: dict[str, list] = {k: [] for k in ("section", "phase", "curve", "op", "dtype", "tc",
                                             "flops", "nbytes", "fixed", "count", "sp_only",
                                             "attention", "slices", "mnk", "grows",
                                             "launches", "batched", "attn", "expert",
                                             "sparse", "dispatch_only", "curve_key",
                                             "groups")}
    opt: dict[str, list] = {k: [] for k in cols}
    fixed, growth = _fixed_bytes(pairs), _mnk_growth(pairs)
    model_flops = recompute_flops = 0.0
    for n, d in nodes:
        total = d["flops"] * d["count"]
        if d["phase"] in ("forward", "backward"):
            model_flops += total
        elif d["phase"] == "recompute":
            recompute_flops += total
        target = opt if d["phase"] == "optimizer" else cols
        section = sections.get(n, SECTION_PRE)
        count = d["count"] / layers if section == SECTION_BLOCK and rep else d["count"]
        cls = d["op_class"]
        out_numel = _numel(d["out_shapes"][0]) if d["out_shapes"] else 0
        target["section"].append(section)
        target["phase"].append(PHASE_CODES.get(d["phase"], 0))
        target["curve"].append(curve_for(cls, d["op"]))
        target["op"].append(d["op"])
        target["curve_key"].append(op_curve_key(d))
        target["dtype"].append(op_dtype(d))
        target["tc"].append(cls in TENSOR_CORE_CLASSES)
        target["flops"].append(float(d["flops"]))
        nbytes, held = float(d["bytes_read"] + d["bytes_written"]), fixed.get(n, 0.0)
        grouped = d.get("grouped") or ()
        if grouped:  # every group's weights held fixed; a step reads those it reaches
            nbytes += grouped[2] - _reached_weights(d)
            held += grouped[2]
        target["nbytes"].append(nbytes)
        target["fixed"].append(held)
        target["groups"].append(tuple(float(x) for x in grouped[:3]) if grouped
                                else (0.0, 0.0, 0.0))
        target["count"].append(float(count))
        if d["phase"] == "forward" and section == SECTION_BLOCK:
            replicated = n not in sharded
        else:  # backward and pre/post: hidden-width outputs are the replicated ones
            replicated = 0 < out_numel <= width_numel
        # a replicated weight matmul (a router, a latent down-projection; in the stack or a
        # layer outside it) runs whole on every rank, its weight held whole
        target["sp_only"].append((d["phase"] == "forward" and n in whole)
                                 or (replicated and cls not in TENSOR_CORE_CLASSES))
        target["attention"].append(cls == "attention" or d["op"] in (
            "aten._softmax", "aten._softmax_backward_data"))
        target["slices"].append(float(op_slices(d)))
        target["mnk"].append(op_mnk(d))
        target["grows"].append(growth.get(n, (False, False, False)))
        target["launches"].append(float(d.get("launches", 1.0)))
        target["batched"].append(d["op"] in BATCHED_MATMULS)
        target["attn"].append(op_attention(d))
        target["sparse"].append(d.get("sparsity") == "2:4")
        target["dispatch_only"].append(d["flops"] <= 0 and d["bytes_read"] + d["bytes_written"]
                                       <= 0 and d.get("launches", 1.0) > 0)
        # an activation the shape of an expert weight has no fixed bytes: not an expert op
        target["expert"].append(section == SECTION_BLOCK and d["index"] in expert_ops
                                and held > 0)

    def table(c, mf, rf) -> OpTable:
        return OpTable(
            section=np.array(c["section"], dtype=np.int8),
            phase=np.array(c["phase"], dtype=np.int8),
            curve=np.array(c["curve"], dtype=np.int64),
            op=tuple(c["op"]),
            curve_key=tuple(c["curve_key"]),
            dtype=tuple(c["dtype"]),
            tensor_core=np.array(c["tc"], dtype=bool),
            flops=np.array(c["flops"], dtype=np.float64),
            nbytes=np.array(c["nbytes"], dtype=np.float64),
            nbytes_fixed=np.array(c["fixed"], dtype=np.float64),
            count=np.array(c["count"], dtype=np.float64),
            sp_only=np.array(c["sp_only"], dtype=bool),
            attention=np.array(c["attention"], dtype=bool),
            slices=np.array(c["slices"], dtype=np.float64),
            mnk=np.array(c["mnk"], dtype=np.float64).reshape(-1, 3),
            mnk_batch=np.array(c["grows"], dtype=bool).reshape(-1, 3),
            batched=np.array(c["batched"], dtype=bool),
            attn=np.array(c["attn"], dtype=np.float64).reshape(-1, 5),
            model_flops=mf, recompute_flops=rf,
            launches=np.array(c["launches"], dtype=np.float64),
            expert=np.array(c["expert"], dtype=bool),
            sparse=np.array(c["sparse"], dtype=bool),
            dispatch_only=np.array(c["dispatch_only"], dtype=bool),
            groups=np.array(c["groups"], dtype=np.float64).reshape(-1, 3),
        )

    return table(cols, model_flops, recompute_flops), table(opt, 0.0, 0.0)


def _activations(g: nx.DiGraph, cap, rep: tuple[str, ...], counts: dict[str, int], layers: int,
                 width_numel: int, sections: dict[int, int], hidden: int, fusions=()
                 ) -> tuple[tuple[float, float], float, float, float]:
    """(one layer's saved bytes split (tp-sharded, sp-only), pre saved, post saved, transient,
    transient outside the post section); a stack of several groups: their layers' mean. What
    autograd saves is the fused kernels' set under ``fusions`` (``cost.fused_saves``), in the
    trace's record of saved tensors and in the liveness pass alike."""
    nodes = _ordered(g)
    layout = _tp_layout(g, nodes, sections, hidden)[0]
    producer: dict[int, int] = {}
    for rec in cap.records:
        for o in rec.outputs:
            producer.setdefault(o.storage, rec.index)
    saves = fused_saves(g, fusions)
    saved = []  # (module, bytes, elements, producing node): the fused kernels' saves
    for module, nbytes, numel, storage in cap.saved_tensors:
        node = producer.get(storage)
        if node in saves.bytes:
            nbytes = saves.bytes[node]
            numel = nbytes // max(1, ITEMSIZE.get(g.nodes[node]["out_dtypes"][0], 4))
        if nbytes > 0:
            saved.append((module, nbytes, numel, node))
    already = {node for *_, node in saved}
    # inputs a fused kernel keeps that nothing else did: a layer's kernel keeps its own (one
    # per layer, though made before it); a kernel of pre or post keeps one, counted there
    layer_inputs, outer_inputs = set(), {SECTION_PRE: 0.0, SECTION_POST: 0.0}
    for node, reader in saves.kept.items():
        if node in already:
            continue
        d = g.nodes[node]
        if any(_in_group(g.nodes[reader]["module"], [r]) for r in rep):
            saved.append((g.nodes[reader]["module"], d["out_bytes"],
                          _numel(d["out_shapes"][0]) if d["out_shapes"] else 0, node))
            if sections.get(node) != SECTION_BLOCK:
                layer_inputs.add(node)
        elif sections.get(node) == SECTION_BLOCK:  # not counted by the liveness pass below
            side = SECTION_POST if sections.get(reader) == SECTION_POST else SECTION_PRE
            outer_inputs[side] += d["out_bytes"]
    sharded = sp_only = 0.0
    for module, nbytes, numel, node in saved:
        owner = next((r for r in rep if _in_group(module, [r])), None)
        if owner is not None:
            nbytes = nbytes * counts[owner] / layers
            split = node in layout if node is not None and sections.get(node) == SECTION_BLOCK \
                else numel > width_numel
            if split:
                sharded += nbytes
            else:
                sp_only += nbytes
    # what a compute kernel's prologue makes (an unpacked weight) stays inside the kernel
    inside = prologue_nodes(g, frozenset(fusions))
    # the layers' inputs are counted per layer by the saved list above, not by the liveness
    g = apply_saves(g, replace(saves, counts={}))
    alloc, last, size, weight, order = liveness_arrays(g)
    phase = np.array([g.nodes[n]["phase"] for n in order])
    section = np.array([sections.get(n, SECTION_PRE) for n in order])
    end = len(order) - 1
    pre, post = outer_inputs[SECTION_PRE], outer_inputs[SECTION_POST]
    keep = np.ones(len(alloc), dtype=bool)
    for i in range(len(alloc)):
        a_phase, l_phase = phase[alloc[i]], phase[last[i]]
        if a_phase == "backward" and last[i] == end:  # a gradient (counted with model states)
            keep[i] = False
        elif a_phase == "forward" and l_phase != "forward":  # held into backward: saved
            keep[i] = False
            if order[alloc[i]] in layer_inputs:
                continue
            # times the members of another repeated group it stands for (dense layers before
            # the main group's): ``weight`` is the op's count for what crosses into backward
            if section[alloc[i]] == SECTION_PRE:
                pre += size[i] * weight[i]
            elif section[alloc[i]] == SECTION_POST:
                post += size[i] * weight[i]
        elif a_phase == "optimizer" or order[alloc[i]] in inside:
            keep[i] = False
    from archcost.cost.kernels import liveness_peak

    peak, _, live = liveness_peak(alloc[keep], last[keep], size[keep], np.ones(int(keep.sum())),
                                  len(order), 0.0)
    body = live[section != SECTION_POST]
    steps = tuple((g.nodes[n]["op"], g.nodes[n]["phase"]) for n in order)
    return ((sharded, sp_only), pre, post, float(peak), float(body.max()) if len(body) else 0.0,
            (live, steps))


def transient_envelope(live_1: np.ndarray, live_2: np.ndarray, steps_1=None, steps_2=None
                       ) -> tuple[tuple[float, float], ...]:
    """The transient peak by batch b >= 1 from the live bytes at each step of a trace at batch 1
    and the same steps at batch 2: each step's bytes are affine in b (fixed 2 l1 - l2, per
    sequence l2 - l1), the peak the upper envelope of those lines, returned as its (fixed, per
    sequence) pieces in order of b. Traces whose steps differ (a router reaching more experts
    at batch 2 runs more ops): the steps paired by ``steps_1``/``steps_2`` (each step's op and
    phase; their longest matching runs), with the line through the two traces' peaks beside
    them; without those, that line alone. One trace empty: its peak grows with b."""
    l1, l2 = np.asarray(live_1, dtype=np.float64), np.asarray(live_2, dtype=np.float64)
    if not len(l1) or not len(l2):
        return ((0.0, float(l1.max()) if len(l1) else 0.0),)
    if l1.shape != l2.shape:
        p1, p2 = float(l1.max()), float(l2.max())
        pairs = _matched(steps_1, steps_2) if steps_1 is not None and steps_2 is not None \
            else []
        a, b = [i for i, _ in pairs], [j for _, j in pairs]
        l1, l2 = np.append(l1[a], p1), np.append(l2[b], p2)
    per = np.maximum(l2 - l1, 0.0)  # a step that shrinks with the batch: held flat
    fixed = l1 - per  # each line through the batch-1 figure
    i = int(np.lexsort((per, l1))[-1])  # the highest at b = 1, the steepest of those
    out = [(float(fixed[i]), float(per[i]))]
    while True:
        f0, s0 = out[-1]
        steeper = per > s0
        if not steeper.any():
            return tuple(out)
        cross = np.where(steeper, (f0 - fixed) / np.where(steeper, per - s0, 1.0), np.inf)
        first = np.flatnonzero(cross <= cross.min())  # overtakes first; the steepest of those
        j = int(first[np.argmax(per[first])])
        out.append((float(fixed[j]), float(per[j])))


def transient_at(w: Workload, batch: float, policy: Recompute = Recompute.NONE) -> float:
    """The transient peak of a micro-batch of ``batch`` sequences: the envelope where traced
    (``Workload.transient_lines``), else ``batch`` times the batch-1 peak."""
    pieces = w.transient_lines.get(policy)
    if not pieces:
        return batch * w.transient[policy]
    return max(f + batch * p for f, p in pieces)


def _module_calls(cap, nodes, sections, members: list[str], layers: int
                  ) -> tuple[float, float, float]:
    """Forward module calls per step (pre, one layer, post): a call inside the main group's
    members is the block's; any other takes the section of its first op, or, making none
    (an identity), of the op before it (the first op's when none is before); each call
    counted as the capture counted it."""
    fwd = sorted((d["index"], sections.get(n, SECTION_PRE), d["module"]) for n, d in nodes
                 if d["phase"] == "forward")
    starts = [i for i, _, _ in fwd]
    own: dict[str, list[int]] = {}  # module -> positions in fwd of its ops and its children's
    for pos, (_, _, module) in enumerate(fwd):
        parts = module.split(".") if module else []
        for k in range(len(parts) + 1):
            own.setdefault(".".join(parts[:k]), []).append(pos)
    out = [0.0, 0.0, 0.0]
    for path, index, count in getattr(cap, "module_calls", ()):
        if not members or _in_group(path, members) or not fwd:
            section = SECTION_BLOCK
        else:
            mine = own.get(path, [])
            at = bisect.bisect_left(mine, bisect.bisect_left(starts, index))
            pos = mine[at] if at < len(mine) else max(bisect.bisect_left(starts, index) - 1, 0)
            section = fwd[pos][1]
        out[section] += count
    out[SECTION_BLOCK] /= layers if members else 1
    return out[SECTION_PRE], out[SECTION_BLOCK], out[SECTION_POST]


def _param_split(cap, rep: tuple[str, ...], members: list[str], layers: int, g: nx.DiGraph, sections):
    first_fwd: dict[str, int] = {}
    for n, d in _ordered(g):
        if d["phase"] == "forward":
            first_fwd.setdefault(d["module"], sections.get(n, SECTION_PRE))
    pre = block = post = expert = 0.0
    weight_bytes = 0.0
    total = trainable = 0.0
    for p in cap.params:
        if p.is_buffer:
            continue
        n = float(_numel(p.shape))
        total += n
        trainable += n if p.trainable else 0.0
        weight_bytes += n * ITEMSIZE.get(p.dtype, 4)
        if members and _in_group(p.module, members):
            block += n
            if len(p.shape) == 3:
                expert += n
        elif first_fwd.get(p.module, SECTION_PRE) == SECTION_POST:
            post += n
        else:
            pre += n
    per_layer = block / layers if members else 0.0
    return pre, per_layer, post, expert / layers if members else 0.0, total, trainable, \
        weight_bytes


def workload_from_traces(traces: Mapping[Recompute, object], policy: PrecisionPolicy,
                         name: str = "model",
                         at_batch_2: Mapping[Recompute, object] | None = None,
                         runtime: RuntimeProfile | None = None,
                         transient_by_batch: bool = False) -> Workload:
    """A Workload from traces (``archcost.trace.Traced``) of one step at batch 1, one per
    recompute policy; every trace at the same sequence length. ``at_batch_2``: the same steps
    at batch 2, where traced, to split each op's bytes into the part that grows with the
    micro-batch and the part that does not (weights). ``runtime`` (default: the default
    runtime profile) fuses ops and launches the optimizer as the stack does.
    ``transient_by_batch``: with ``at_batch_2``, the transient peak's envelope by batch too
    (``Workload.transient_lines``: a second liveness pass, which inference pricing reads)."""
    runtime = runtime or load_runtime()
    if not traces:
        raise ValueError("workload_from_traces needs at least one trace")
    first = next(iter(traces.values()))
    g0, cap0 = first.graph, first.capture
    seq_len = int(g0.graph["seq_len"])
    if int(g0.graph["batch_size"]) != 1:
        raise ValueError("trace the model at batch 1: plans scale it by the micro-batch")
    rep, members, layers, counts = _main_group(cap0)
    nodes0 = _ordered(g0)
    sections0 = _sections(nodes0, rep)
    hidden, width_numel = _hidden(nodes0, sections0)
    heads, kv_hidden = _attention_facts(cap0.records, rep, hidden, seq_len)
    notes = []
    if heads == 0:
        notes.append("no attention found: tensor parallel limited by the hidden width")
        heads = hidden
    head_dim = max(1, hidden // heads)
    kv_heads = max(1, kv_hidden // head_dim)
    if heads % kv_heads:
        kv_heads = heads
    _, tp_points, outside, whole = _tp_layout(g0, nodes0, sections0, hidden,
                                              runtime.tp_sum_partials)
    held = {}  # bytes of the whole matmuls' weights: one layer of the stack's, the rest's
    for inside in (True, False):
        modules = {g0.nodes[n]["module"] for n in whole
                   if (sections0.get(n) == SECTION_BLOCK) == inside}
        held[inside] = float(sum(p.numel * ITEMSIZE.get(p.dtype, 1) for p in cap0.params
                                 if p.module in modules))
    tp_points = tp_points / layers if rep else tp_points  # the block's nodes stand for its layers
    tp_points = int(tp_points) if float(tp_points).is_integer() else tp_points
    if rep and tp_points == 0:
        notes.append("no row-parallel projection found in the block: tensor parallel is costed "
                     "without its per-layer all-reduces")
    routing = (getattr(cap0, "assumptions", None) or {}).get("routing") or {}
    if routing.get("routers"):
        notes.append(f"routing assumed: {routing['description']}")
    pre, blk, post, expert, total, trainable, wbytes = _param_split(cap0, rep, members, layers,
                                                                    g0, sections0)
    experts = 0
    dispatch = 0.0
    for rec in cap0.records:
        if rec.phase.value == "forward" and rec.op == "aten.bmm" and rep and \
                (rec.repeat_group or "").startswith(rep):
            a = rec.named.get("self")
            b = rec.named.get("mat2")
            if b is not None and a is not None and expert > 0 and len(b.shape) == 3:
                experts = int(b.shape[0])
                dispatch = float(a.nbytes)
                break
    ops, saved_block, saved_pre, saved_post, transient, body = {}, {}, {}, {}, {}, {}
    lines = {}
    opt_table = None
    read_heads = 0
    for policy_r, traced in traces.items():
        g, cap = traced.graph, traced.capture
        if int(g.graph["seq_len"]) != seq_len or int(g.graph["batch_size"]) != 1:
            raise ValueError("every trace must be at batch 1 and the same sequence length")
        nodes = _ordered(g)
        sections = _sections(nodes, rep)
        two = (at_batch_2 or {}).get(policy_r)
        run = executed_graph(g, runtime)
        read_heads = min((d["kv_heads"] for _, d in run.nodes(data=True)
                          if d["op_class"] == "attention" and d["phase"] == "forward"
                          and d.get("kv_heads")), default=0)
        table, opt = _op_table(run, rep, layers, width_numel, hidden,
                               _pairs(run, executed_graph(two.graph, runtime)
                                      if two is not None else None),
                               _expert_ops(cap, rep, members) if expert > 0 else frozenset())
        ops[policy_r] = table
        opt_table = opt_table or opt
        (saved_block[policy_r], saved_pre[policy_r], saved_post[policy_r], transient[policy_r],
         body[policy_r], live) = _activations(g, cap, rep, counts, layers, width_numel,
                                              sections, hidden, runtime.fusions)
        if two is not None and transient_by_batch:
            g2 = two.graph
            live_2 = _activations(g2, two.capture, rep, counts, layers, width_numel,
                                  _sections(_ordered(g2), rep), hidden, runtime.fusions)[5]
            lines[policy_r] = transient_envelope(live[0], live_2[0], live[1], live_2[1])
    shape = ModelShape(layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden,
                       seq_len=seq_len, experts=experts)
    opt_bytes = (cap0.optimizer_state_bytes + cap0.master_weight_bytes) / max(trainable, 1.0)
    low = policy.low_precision
    n = max(total, 1.0)
    own = wbytes / n  # bytes per parameter of the weights as stored
    lowp_gather = own if low is None else (
        wbytes - cap0.lowp_params * ITEMSIZE[policy.compute_dtype]
        + cap0.lowp_params * low.param_bytes) / n
    return Workload(
        name=name, shape=shape, precision=policy.precision.value,
        compute_dtype=policy.compute_dtype, seq_len=seq_len, ops=ops, optimizer=opt_table,
        params_pre=pre, params_block=blk, params_post=post, params_expert_block=expert,
        trainable_params=trainable,
        weight_bytes=(wbytes + cap0.lowp_state_bytes) / n,
        grad_bytes=ITEMSIZE[policy.grad_dtype] * trainable / max(total, 1.0),
        optimizer_bytes=opt_bytes * trainable / max(total, 1.0),
        saved_block=saved_block, saved_pre=saved_pre, saved_post=saved_post,
        transient=transient, transient_body=body, transient_lines=lines, hidden=hidden, act_bytes=ITEMSIZE[policy.compute_dtype],
        tp_points=tp_points, kv_hidden=kv_hidden, dispatch_bytes=dispatch, notes=tuple(notes),
        tp_points_outside=outside if rep else 0.0, attention_kv_heads=read_heads,
        whole_weight_bytes=held[True] if rep else 0.0,
        whole_weight_bytes_outside=held[False] if rep else held[True] + held[False],
        gemm_dtype=policy.gemm_dtype, gather_bytes=own, lowp_gather_bytes=lowp_gather,
        runtime=runtime, module_calls=_module_calls(cap0, nodes0, sections0, members, layers),
    )


def trace_workload(spec, seq_len: int, policy: PrecisionPolicy, optimizer: str = "adamw",
                   recomputes=tuple(Recompute), progress=None,
                   runtime: RuntimeProfile | None = None, options=None) -> Workload:
    """Trace ``spec`` at one sequence of ``seq_len`` tokens once per recompute policy, as
    ``runtime`` (default: the default runtime profile) runs it (``options``: the traces'
    assumptions, :class:`archcost.trace.CaptureOptions`)."""
    from functools import partial

    from archcost.trace import trace_model as _trace

    trace_model = partial(_trace, options=options)

    runtime = runtime or load_runtime()
    opt = runtime.traced_optimizer(optimizer)
    traces, twos = {}, {}
    for r in recomputes:
        if progress:
            progress(f"tracing {spec.name} (recompute={r.value})")
        traces[r] = trace_model(spec, 1, seq_len, policy, opt, recompute=r,
                                selective=runtime.selective_recompute)
        twos[r] = trace_model(spec, 2, seq_len, policy, opt, recompute=r,
                              selective=runtime.selective_recompute)
    return workload_from_traces(traces, policy, name=spec.name, at_batch_2=twos,
                                runtime=runtime)
