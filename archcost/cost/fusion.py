"""Kernel fusion as a runtime executes the traced graph: which memory-bound ops share a kernel.

The graph records one aten op per node, as eager PyTorch on a CPU dispatches them. A GPU stack
runs some chains of pointwise ops, reductions and copies as one kernel: the chain's inputs are
read once, its outputs written once, the tensors passed inside it never reach device memory.
``fuse_graph`` rewrites the bytes each node moves accordingly and says how many kernels it
launches (``launches``: 1 for the first member of a group, 0 for the others).

Which chains fuse is the runtime's list (``runtime.Fusion``), each a family of fusable nodes
(op classes elementwise, reduction, norm, data-movement) tagged by what they compute:

- ``dropout``: a dropout's ops (CPU dispatch decomposes it into bernoulli_, div_, mul; CUDA runs
  one native_dropout kernel writing the output and the mask);
- ``residual``: a dropout with the residual add after it (Megatron's bias-dropout-add);
- ``softmax``: the ops on the attention score matrix around softmax (scale, mask, softmax and
  their backward: Megatron's fused scale-mask-softmax);
- ``norm``: the ops of a normalization module written out (RMSNorm: pow, mean, add, rsqrt, mul,
  mul), one kernel as Apex/Transformer Engine's fused norms;
- ``activation``: an activation and its pointwise neighbours in its module (bias-GeLU, SwiGLU);
- ``rope``: the pointwise ops and copies inside an attention module (rotary embeddings, layout
  copies) outside the score matrix;
- ``elementwise``: every chain inside the repeated blocks (torch.compile's Inductor per block);
- ``dequant``: inside a packed linear (``trace.quant``: a module class ending ``QuantLinear``),
  the chain that turns the packed weight into the GEMM's operand (unpack, convert, scale, 2:4
  scatter) runs inside the GEMM, which reads the packed bytes (TensorRT-LLM's weight-only and
  cuSPARSELt GEMMs); the input's fp8 cast chain there is one kernel (TRT-LLM's quantize);
  the GEMM of a ``Sparse*`` linear is marked ``sparsity`` 2:4 (it runs at the sparse peak);
  a module's packed stacked expert weights (class name ending ``QuantExperts``) likewise run
  inside their grouped GEMM, which reads the packed bytes of the experts its rows reach (its
  ``grouped`` weight bytes become the packed ones) and, fp8, runs as an fp8 GEMM;
- ``kv-cache``: the chain from the KV cache to an attention op (the read slice, the cast from
  the cache's dtype, GQA head repeats) runs inside the attention kernel, which reads the cache
  in its own dtype (TensorRT-LLM's attention dequantizes an int8/fp8 cache on the fly); a
  concatenation of the held tokens and the new ones (transformers' ``DynamicCache``) is an
  append the engine makes in place: it joins the chain, the kernel reading the held tokens
  and the new ones once, and the cache's copy is gone;
- ``kv-cache-per-head``: as ``kv-cache``, the cache read once per query head rather than once
  per KV head: a generation kernel that runs each (sequence, query head) on its own loads the
  KV head it shares with the other heads of its group again (TensorRT-LLM's masked multi-head
  attention before its XQA kernel shared them, NVIDIA/TensorRT-LLM
  docs/source/blogs/XQA-kernel.md, 2024-01-30: XQA "provides optimization for MQA and GQA
  during generation phase ... reducing data loading").
- ``kv-cache-per-head-xqa8``: as ``kv-cache-per-head``, but an attention of 8 query heads per
  KV head and head dim 128 reads its cache once per KV head: the shape TensorRT-LLM's first XQA
  kernels serve (``DecoderXQARunner::shouldUse``, v0.8: "nbQHeadsPerKV != 8" or "head_size
  != 128" falls back to the masked multi-head attention), LLaMA 2 70B's, not Mistral's 4 nor
  Falcon 180B's 29.

Two tagged nodes of one family, the same phase and the same block join when an edge links them
and they sit at the same *level*, the number of unfused kernels on the longest path from the
graph's sources to them: a path from one member through a matmul to another member would raise
the level, so a group never needs an unfused kernel's output that needs the group's own (the
legality rule of Inductor's scheduler).

A group's FLOPs and bytes go to its first member (the kernel overlaps its math with its
traffic), the others carry none. Bytes of a group: what its members read from outside it (tensors made by other kernels,
parameters, inputs) plus what they write that something outside reads (saved activations
included: their readers run in backward) or nothing reads. NB: the bytes moved count the
trace's saved set; the memory held counts the fused kernels' (``cost.fused_saves``). The group
keeps the op name and efficiency curve of its first member.

The last two fold a *prologue* into a compute kernel: the memory-bound ops of the compute op's
module that lead only into it and read nothing but persistent state (parameters, packed
weights, the cache) join it; the kernel reads what the chain reads from outside, keeping the
compute op's name, curve and shape. An attention kernel carries its chain's FLOPs (the
cache's casts, per element it reads); a GEMM does not: unpacking a weight is CUDA-core work
per weight, not per token, which a weight-only kernel overlaps with its loads and its
tensor-core math (carried as the GEMM's, a batch of 64 multiplied it by 64 and stretched the
GEMM's k: Llama 8B int4 read slower than bf16). NB: a state tensor two members read is counted
twice (``trace.quant`` reads each once).

``mask``: the ops that build an attention mask from positions alone (no activation, no weight
or cache: ``arange``, comparisons, ``where``; transformers' causal and sliding-window masks) and
whose outputs only attention ops read are not run, and the attention kernels do not read the
mask: a serving engine's attention operator takes each sequence's length and the attention
window and masks inside the kernel (TensorRT-LLM's ``gpt_attention``: packed sequences with
their lengths, ``max_attention_window_size`` for a sliding window). A chain counts as a mask's
when it holds a comparison or a ``where`` (what makes a mask from positions): the copies of
the KV cache into an attention (``kv-cache``) do not.

``attention``: an attention written out as ops runs as one attention kernel, as a serving
engine's attention operator runs whatever the model's code spells (TensorRT-LLM builds every
model's attention on its ``gpt_attention`` operator). The pattern: a forward batched matmul
(the scores) whose output reaches, through memory-bound ops of its module only (scale, mask,
softcap, softmax, casts, views), one other batched matmul (the probabilities times the
values), a softmax on the way and nothing outside reading what the chain makes; with it the
casts, scalar scalings and views that lead only into the two matmuls (SDPA's math path casts
bf16 to fp32 and scales the query and key) and the casts and views after the second. Eager
attention (``torch.matmul``, ``softmax``, ``torch.matmul``), Gemma 2's softcapped scores and
SDPA's math path (what a CPU runs when the value head dim differs from the query's: DeepSeek's
MLA) all match. The first matmul becomes the kernel: an SDPA node (bhsd) of the two matmuls'
FLOPs, halved when causal (a mask of the scores' square shape read by the chain: flash
attention's convention, ``trace.rules_attention``), reading what the members read from outside
(query, key, value, the mask) and writing the output once; the score matrix and every tensor
inside is never allocated. With ``kv-cache`` the cache's reads, casts and appends that lead
only into its members run inside it too (the mask's ops apart), the kernel reading the cache
once. NB: a padding mask of the scores' shape reads as causal.

``mla``: a generation step (one query a sequence) whose attention reads keys and values one
linear projects from every cached token (multi-head latent attention as transformers'
DeepSeek-V3 writes it: the latent cache through ``kv_b_proj`` each step) runs absorbed, as
TensorRT-LLM's ``MLA.forward_generation`` does: the query's no-position part through the
projection's key half (per head, ``dn x r``), one attention of every head over the cached
latent and its rotary part (``r + dr`` wide, one KV head shared by all: each GPU reads it
whole), the output through the value half (``r x dv``). The projection becomes those two
per-head GEMMs (FLOPs ``2*B*H*r*(dn + dv)`` a query token, reading its weight once); the
attention ``2*B*H*Sk*(2r + dr)`` FLOPs, reading the query and the latent of its ``Sk``
tokens; the expanded keys and values, their copies and the cache's appends are never made.
The head dims come from the trace: ``r`` the projection's input width, ``dn`` and ``dv`` the
split of each head's output, ``dr`` the query-key head dim less ``dn``. A prefill (context
phase) keeps the expanded form, as the engine runs it.

``qkv`` merges compute kernels rather than memory-bound ones: the forward GEMMs of the linears
of one attention module (a module class with ``Attention`` in its name) that read the same input
run as one GEMM whose weight holds theirs side by side (TensorRT-LLM's ``Attention.qkv``, one
``ColumnLinear`` of the query, key and value widths): the first carries their FLOPs and bytes,
the input read once, and the merged shape (``gemm_shape``: rows x the widths' sum, which the
shape tables price), the others nothing. NB: forward only; a training stack that fuses them
(Megatron's ``linear_qkv``) merges their backward too, which this family does not model.

The optimizer's ops of a ``foreach`` runtime launch one multi-tensor kernel per kind of op over
all parameters (``executed_graph``): each op's share of those launches.
"""

from __future__ import annotations

from typing import NamedTuple

import networkx as nx

from archcost.cost.compute import BATCHED_MATMULS, op_mnk
from archcost.runtime import Fusion, OptimizerKernel
from archcost.trace.precision import ITEMSIZE
from archcost.trace.rules_base import out_of_place

__all__ = ["fuse_graph", "executed_graph", "prologue_nodes", "FUSABLE_CLASSES"]

# op classes a fusing runtime merges (memory-bound, no tensor-core kernel)
FUSABLE_CLASSES = frozenset({"elementwise", "reduction", "norm", "data-movement"})
_PHASES = ("forward", "backward", "recompute")
_DROPOUT = frozenset({"aten.bernoulli_", "aten.native_dropout", "aten.native_dropout_backward"})
_ACTIVATIONS = frozenset({"aten.gelu", "aten.silu", "aten.relu", "aten.sigmoid", "aten.tanh",
                          "aten.gelu_backward", "aten.silu_backward", "aten.threshold_backward",
                          "aten.sigmoid_backward", "aten.tanh_backward"})
_SOFTMAX = frozenset({"aten._softmax", "aten._safe_softmax", "aten._softmax_backward_data"})
_COMPUTE = frozenset({"matmul", "conv", "attention"})  # kernels a prologue can join
_PACKED = "QuantLinear"  # class-name suffix of trace.quant's packed linears
_PACKED_EXPERTS = "QuantExperts"  # ... and of a module holding packed stacked expert weights
_GEMMS = frozenset({"aten.mm", "aten.addmm", "aten._scaled_mm"})  # a linear's GEMM


def _square(d: dict) -> bool:
    """Its output is a score matrix: (..., S, S) with S > 1 and at least 3 dims."""
    shape = d["out_shapes"][0] if d["out_shapes"] else []
    return len(shape) >= 3 and shape[-1] == shape[-2] and shape[-1] > 1


def _levels(g: nx.DiGraph, fusable: set[int]) -> dict[int, int]:
    """Unfused kernels on the longest path from a source to each node (the node excluded)."""
    level: dict[int, int] = {}
    for n in sorted(g.nodes, key=lambda v: g.nodes[v]["index"]):  # execution order: topological
        level[n] = max((level[p] + (p not in fusable) for p in g.predecessors(n)
                        if p in level), default=0)
    return level


def _tags(g: nx.DiGraph, fusions: frozenset[Fusion], absorbed: frozenset[int] = frozenset()
          ) -> dict[int, tuple]:
    """Each fusable node's family key under ``fusions`` (untagged nodes run alone); nodes
    ``absorbed`` into a compute kernel's prologue take no family."""
    classes = g.graph.get("module_classes", {})
    fusable = [n for n, d in g.nodes(data=True) if n not in absorbed
               and d["op_class"] in FUSABLE_CLASSES and d["phase"] in _PHASES]
    tags: dict[int, tuple] = {}
    if Fusion.ELEMENTWISE in fusions:  # the blocks' chains; outside them, the other families
        for n in fusable:
            if g.nodes[n].get("repeat_group"):
                tags[n] = ("elementwise",)
    is_fusable = set(fusable) - set(tags)
    if Fusion.DROPOUT in fusions or Fusion.RESIDUAL in fusions:
        for n, d in g.nodes(data=True):
            if d["op"] == "aten.bernoulli_":  # bernoulli_ -> div_ -> mul: one native_dropout
                key = ("dropout", n)
                tags[n] = key
                for s in g.successors(n):
                    if g.nodes[s]["op"] == "aten.div_":
                        tags[s] = key
                        for m in g.successors(s):
                            if g.nodes[m]["op"] == "aten.mul" and m in is_fusable:
                                tags[m] = key
                                if Fusion.RESIDUAL in fusions:
                                    for a in g.successors(m):
                                        if g.nodes[a]["op"] == "aten.add" and a in is_fusable:
                                            tags[a] = key
    for n in fusable:
        if n in tags:
            continue
        d = g.nodes[n]
        cls = classes.get(d["module"], "")
        if Fusion.DEQUANT in fusions and cls.endswith(_PACKED):
            tags[n] = ("quantize", d["module"])
        elif Fusion.SOFTMAX in fusions and (d["op"] in _SOFTMAX or _square(d)):
            tags[n] = ("softmax", d["module"])
        elif Fusion.NORM in fusions and "Norm" in cls:
            tags[n] = ("norm", d["module"])
        elif Fusion.ACTIVATION in fusions and (d["op"] in _ACTIVATIONS or any(
                g.nodes[m]["op"] in _ACTIVATIONS and g.nodes[m]["module"] == d["module"]
                for m in (*g.predecessors(n), *g.successors(n)))):
            tags[n] = ("activation", d["module"])
        elif Fusion.ROPE in fusions and "Attention" in cls and not _square(d):
            tags[n] = ("rope", d["module"])
    return tags


def _state_chain(g: nx.DiGraph, c: int, into: frozenset[int] = frozenset()) -> list[int]:
    """The memory-bound ops of ``c``'s module and phase that lead only into ``c`` (or the
    other members ``into`` of an attention written out) and read no tensor another op made
    outside them, in execution order. A tensor no traced op made is persistent state
    (parameters, packed weights, the cache): the model's own inputs reach the blocks only
    through ops (the embedding)."""
    d = g.nodes[c]
    targets = into | {c}
    near = sorted((n for n in set().union(*(nx.ancestors(g, t) for t in targets)) - targets
                   if g.nodes[n]["module"] == d["module"] and g.nodes[n]["phase"] == d["phase"]
                   and g.nodes[n]["op_class"] not in _COMPUTE),
                  key=lambda n: g.nodes[n]["index"])
    attention = d["op_class"] == "attention" or bool(into)
    chain: set[int] = set()
    for n in near:  # producers first: a node joins when everything it reads is state or chain
        if all(p in chain for p in g.predecessors(n)) or (attention and _appends(g, n)):
            chain.add(n)
    def fits(n: int, kept: set[int]) -> bool:
        # what a node outside the chain (or nothing) reads would be written; a view nothing
        # reads keeps what the cache holds (a sliding window's last tokens of the
        # concatenation): the engine's cache itself
        succ = {v for v in g.successors(n)
                if not (_view(g.nodes[v]) and not any(True for _ in g.successors(v)))}
        return bool(succ) and succ <= kept | targets

    return sorted(_prune(chain, fits), key=lambda n: g.nodes[n]["index"])


def _prune(nodes: set[int], fits) -> set[int]:
    """``nodes`` less those that do not ``fits(node, nodes left)``, until every one left
    does (dropping one can unfit another)."""
    changed = True
    while changed:
        changed = False
        for n in list(nodes):
            if not fits(n, nodes):
                nodes.discard(n)
                changed = True
    return nodes


def _appends(g: nx.DiGraph, n: int) -> bool:
    """Whether ``n`` appends new tokens to a cache: a ``cat`` that reads state (more bytes
    than the ops before it made: the tokens the cache holds) beside what those ops made (the
    step's keys or values), as transformers' ``DynamicCache.update`` concatenates. A serving
    engine writes the new tokens into its cache in place, and its attention kernel reads the
    cache: in a ``kv-cache`` prologue the append joins the chain, its copy of the cache gone."""
    d = g.nodes[n]
    if d["op"] != "aten.cat":
        return False
    made = sum(e["bytes"] for _, _, e in g.in_edges(n, data=True))
    return d["bytes_read"] > made


_KV_FAMILIES = frozenset({Fusion.KV_CACHE, Fusion.KV_CACHE_PER_HEAD, Fusion.KV_CACHE_PER_HEAD_XQA8})
# the one grouped shape (query heads per KV head, head dim) the XQA kernels of
# ``kv-cache-per-head-xqa8`` serve
_XQA8 = (8.0, 128)


def _prologues(g: nx.DiGraph, fusions: frozenset[Fusion], explicit=()
               ) -> dict[int, list[int]]:
    """Compute node -> the state chain that runs inside its kernel (``dequant``, ``kv-cache``;
    an attention written out (``explicit``) takes its chain on its scores' matmul)."""
    classes = g.graph.get("module_classes", {})
    out: dict[int, list[int]] = {}
    if fusions & _KV_FAMILIES and explicit:
        readers = frozenset(n for _, members, _ in explicit for n in members)
        masks = _mask_chain(g, frozenset(), readers)  # built from positions, not the cache
        for s, members, _ in explicit:
            chain = [n for n in _state_chain(g, s, frozenset(members)) if n not in masks]
            if chain:
                out[s] = chain
    for c, d in g.nodes(data=True):
        packed = d["op_class"] == "matmul" and classes.get(d["module"], "").endswith(
            (_PACKED, _PACKED_EXPERTS))
        if (Fusion.DEQUANT in fusions and packed) or (
                fusions & _KV_FAMILIES
                and d["op_class"] == "attention"):
            chain = _state_chain(g, c)
            if chain:
                out[c] = chain
    return out


class _Plan(NamedTuple):
    """What a runtime's fusions make of a graph beyond its memory-bound groups: the one
    derivation ``fuse_graph`` prices and ``prologue_nodes`` reads."""

    explicit: list  # attentions written out: (scores' matmul, members, its output's writer)
    prologues: dict  # compute node -> the chain that runs inside its kernel
    absorbed: frozenset  # the prologues' nodes
    readers: frozenset  # the members of the attentions written out
    latent: list  # latent attentions absorbed (``mla``): ``_latent_attentions``
    unmade: frozenset  # what an absorbed latent attention never makes
    masks: frozenset  # the mask-building ops that run nowhere (``mask``)


def _plan(g: nx.DiGraph, fusions: frozenset[Fusion]) -> _Plan:
    explicit = _explicit_attention(g) if Fusion.ATTENTION in fusions else []
    prologues = _prologues(g, fusions, explicit)
    absorbed = frozenset(n for chain in prologues.values() for n in chain)
    readers = frozenset(n for _, members, _ in explicit for n in members)
    latent = _latent_attentions(g, explicit) if Fusion.MLA in fusions else []
    unmade = frozenset(n for *_, gone, _ in latent for n in gone)
    masks = frozenset(_mask_chain(g, absorbed | readers | unmade, readers)) \
        if Fusion.MASK in fusions else frozenset()
    return _Plan(explicit, prologues, absorbed, readers, latent, unmade, masks)


def prologue_nodes(g: nx.DiGraph, fusions: frozenset[Fusion]) -> set[int]:
    """The nodes a runtime runs inside a compute kernel's prologue (``dequant``, ``kv-cache``,
    an attention written out but for its output) or not at all (``mask``, an absorbed latent
    attention's expansion): what they make never leaves the kernel (an unpacked weight, the
    cache's cast or copy, a mask, a score matrix), so it is never allocated."""
    plan = _plan(g, frozenset(fusions))
    return (set(plan.absorbed) | plan.unmade | plan.masks
            | {n for _, members, last in plan.explicit for n in members if n != last}
            | {proj for proj, *_ in plan.latent})


_MASKING = frozenset({"aten.gt", "aten.ge", "aten.lt", "aten.le", "aten.eq", "aten.ne",
                      "aten.where", "aten.tril", "aten.triu", "aten.masked_fill"})


def _mask_chain(g: nx.DiGraph, taken: frozenset[int], readers: frozenset[int] = frozenset()
                ) -> set[int]:
    """The forward nodes (not in ``taken``) that build from positions alone what only attention
    nodes (or ``readers``: the members of attentions written out) read, where the chain masks
    (a comparison, ``where``, ``tril``), and the index arithmetic on positions that nothing
    reads (what transformers' mask functions make for their indexing): ``mask``."""
    def index(n: int) -> bool:  # positions' arithmetic: integers and booleans
        return all(t == "bool" or "int" in t for t in g.nodes[n]["out_dtypes"])

    attention = {n for n, d in g.nodes(data=True) if d["op_class"] == "attention"} | readers
    chain: set[int] = set()
    for n in sorted(g.nodes, key=lambda n: g.nodes[n]["index"]):
        d = g.nodes[n]
        if n in taken or d["phase"] != "forward" or d["op_class"] in _COMPUTE or \
                d["op_class"] == "embedding":
            continue
        if all(p in chain for p in g.predecessors(n)):
            chain.add(n)  # reads what the chain made, or inputs and state (positions)
    def fits(n: int, kept: set[int]) -> bool:  # only the chain or attention reads it (or
        # nothing: an index)
        succ = set(g.successors(n))
        return (bool(succ) or index(n)) and succ <= kept | attention

    _prune(chain, fits)
    parts = nx.weakly_connected_components(g.subgraph(chain))
    return {n for part in parts
            if any(out_of_place(g.nodes[n]["op"]) in _MASKING for n in part)
            or all(index(n) and not set(g.successors(n)) - part for n in part) for n in part}


# a cast, a scalar scale, a layout copy (GQA's repeated KV heads made contiguous)
_LEADING = frozenset({"aten._to_copy", "aten.mul", "aten.div", "aten.clone"})
_EXPLICIT_OP = "aten._scaled_dot_product_efficient_attention"  # bhsd; value head dim its own
_CHAIN_MOST = 64  # ops between the two matmuls of an attention written out


def _view(d: dict) -> bool:
    return d["bytes_written"] == 0 and d["flops"] == 0 and d["op_class"] == "data-movement"


def _explicit_attention(g: nx.DiGraph) -> list[tuple[int, list[int], int]]:
    """Each attention written out as ops (``attention``): (its scores' matmul, its members in
    execution order, the member writing its output)."""
    found = []
    for s, d in g.nodes(data=True):
        if d["op"] not in BATCHED_MATMULS or d["phase"] != "forward":
            continue
        got = _between(g, s)
        if got is None:
            continue
        chain, p = got
        group = {s, p} | chain
        post, last = [], p
        n = p
        while True:  # the output's casts and views
            succ = list(g.successors(n))
            if len(succ) != 1 or g.in_degree(succ[0]) != 1:
                break
            m = g.nodes[succ[0]]
            if m["module"] != d["module"] or not (_view(m) or m["op"] == "aten._to_copy"):
                break
            n = succ[0]
            post.append(n)
            if not _view(m):
                last = n
        group |= set(post[:post.index(last) + 1] if last != p else ())
        group |= _leading(g, group, d["module"])
        found.append((s, sorted(group, key=lambda v: g.nodes[v]["index"]), last))
    return found


def _between(g: nx.DiGraph, s: int) -> tuple[set[int], int] | None:
    """(the memory-bound chain, the values' matmul) after the scores' matmul ``s``, or None
    when its output does not reach exactly one other batched matmul through memory-bound ops
    of its module with a softmax on the way, or something outside reads what the chain makes."""
    module = g.nodes[s]["module"]
    chain: set[int] = set()
    ends: set[int] = set()
    todo = list(g.successors(s))
    while todo:
        n = todo.pop()
        if n in chain or n in ends:
            continue
        d = g.nodes[n]
        if d["op"] in BATCHED_MATMULS:
            ends.add(n)
        elif d["op_class"] in FUSABLE_CLASSES and d["phase"] == "forward" and \
                d["module"] == module and not d.get("held_by_caller"):
            chain.add(n)
            if len(chain) > _CHAIN_MOST:
                return None
            todo.extend(g.successors(n))
        else:
            return None
    if len(ends) != 1 or not any(g.nodes[n]["op"] in _SOFTMAX for n in chain):
        return None
    p = next(iter(ends))
    if s in g.predecessors(p) or not any(q in chain for q in g.predecessors(p)):
        return None
    return chain, p


def _leading(g: nx.DiGraph, group: set[int], module: str) -> set[int]:
    """The casts, scalar scalings, layout copies and views of ``module`` that lead only into
    ``group``, each reading one tensor (SDPA's math path: the query, key and value cast to
    fp32, the query and key scaled; eager attention's KV heads repeated for their query
    heads)."""
    lead: set[int] = set()
    todo = [p for n in group for p in g.predecessors(n) if p not in group]
    while todo:
        n = todo.pop()
        d = g.nodes[n]
        if n in lead or n in group or d["module"] != module or d["phase"] != "forward" or \
                g.in_degree(n) != 1 or not (_view(d) or d["op"] in _LEADING) or \
                not set(g.successors(n)) <= group | lead:
            continue
        lead.add(n)
        todo.extend(g.predecessors(n))
    return lead


def _fold_attention(g: nx.DiGraph, out: nx.DiGraph, s: int, members: list[int], last: int,
                    masks: frozenset[int] = frozenset()) -> None:
    """``members`` (an attention written out) as one attention kernel on ``s``, the scores'
    matmul; a mask in ``masks`` (built inside the kernel) is not read."""
    inside = set(members)
    d, sq, sk = g.nodes[s], *g.nodes[s]["out_shapes"][0][-2:]
    dq = op_mnk(d)[2]
    p = next(n for n in members if n != s and g.nodes[n]["op"] in BATCHED_MATMULS
             and any(q in inside for q in g.predecessors(n)))
    dv = g.nodes[p]["out_shapes"][0][-1]
    four = _scores_4d(g, members, sq, sk)
    b, h = (four[0], four[1]) if four else (1, g.nodes[s]["out_shapes"][0][0])
    read, causal = 0.0, False
    heads = []  # the heads of each 4-D tensor it reads as stored (the mask's one apart)
    for n in members:  # state it reads (no edge), and what it reads from outside: a
        # broadcast view of it (a KV head expanded to its query heads) as its storage
        if _view(g.nodes[n]):  # read by its readers
            continue
        edges = list(g.in_edges(n, data=True))
        read += max(0, g.nodes[n]["bytes_read"] - sum(e["bytes"] for *_, e in edges))
        for q, _, e in edges:
            origin, least, stored = _view_path(g, q, inside)
            if q in masks:
                causal = sq == sk and sq > 1
            elif origin not in inside:
                read += min(float(e["bytes"]), least)
                shape = list(e.get("shape") or [])
                # a mask of the scores' shape
                causal |= n not in (s, p) and shape[-2:] == [sq, sk] and sq == sk and sq > 1
                shape = shape if stored is None else stored
                if len(shape) == 4 and shape[-2:] != [sq, sk]:
                    heads.append(shape[1])
    flops = g.nodes[s]["flops"] + g.nodes[p]["flops"]
    for n in members:
        out.nodes[n].update(bytes_read=0, bytes_written=0, flops=0, launches=0.0)
    out.nodes[s].update(
        op=_EXPLICIT_OP, efficiency_key=_EXPLICIT_OP, op_class="attention",
        flops=flops // 2 if causal else flops, bytes_read=int(read),
        bytes_written=g.nodes[last]["bytes_written"], launches=1.0,
        out_shapes=[[b, h, sq, dv]], out_dtypes=list(g.nodes[last]["out_dtypes"][:1]),
        compute_dtype=g.nodes[last]["out_dtypes"][0],
        attention_shape=[int(dq), int(sq), int(sk), int(causal), 0],
        kv_heads=int(min(heads, default=h)))


def _scores_4d(g: nx.DiGraph, members, sq: int, sk: int) -> list | None:
    """The 4-D (batch, heads, sq, sk) view of an attention written out's scores (its
    batched matmul's output is (batch x heads, sq, sk)); None when no member holds one."""
    return next((g.nodes[n]["out_shapes"][0] for n in members
                 if len(g.nodes[n]["out_shapes"][0]) == 4
                 and g.nodes[n]["out_shapes"][0][-2:] == [sq, sk]), None)


def _latent_attentions(g: nx.DiGraph, explicit) -> list[tuple]:
    """Each generation step's attention on keys and values one linear projects from every
    cached token (``mla``): (the projection, the attention kernel's node, its members, the ops
    an absorbed step does not run, (batch, heads, r, dr, dn, dv, keys))."""
    kernels = [(s, set(members), True) for s, members, _ in explicit]
    kernels += [(c, {c}, False) for c, d in g.nodes(data=True) if d["op_class"] == "attention"
                and d["phase"] == "forward" and len(d.get("attention_shape") or ()) == 5
                and d["out_shapes"] and len(d["out_shapes"][0]) == 4]
    found = []
    for c, members, written in kernels:
        d = g.nodes[c]
        if written:  # the scores' matmul: (b*h, sq, sk), its 4-D view gives b and h
            sq, sk = d["out_shapes"][0][-2:]
            dq = op_mnk(d)[2]
            four = _scores_4d(g, members, sq, sk)
            if four is None:
                continue
            batch, heads = four[0], four[1]
        else:
            dq, sq, sk = d["attention_shape"][:3]
            batch, heads = d["out_shapes"][0][:2]
        if sq != 1 or sk <= 1:
            continue
        proj = _expanding_gemm(g, members, batch * sk)
        if proj is None:
            continue
        _, n, r = op_mnk(g.nodes[proj])
        if heads <= 0 or n % heads:
            continue
        split = _head_split(g, proj, int(n // heads))
        if split is None or not 0 < split[0] < dq:
            continue
        dn, dv = split
        gone = _expanded(g, proj, members)
        found.append((proj, c, members, gone,
                      (batch, heads, int(r), int(dq - dn), dn, dv, int(sk))))
    return found


def _reach(g: nx.DiGraph, starts, forward: bool, skip=frozenset()):
    """Each node from ``starts`` on, once, walking on (its successors, or its predecessors)
    past forward memory-bound ops only; ``skip``: nodes never visited."""
    seen, todo = set(skip), list(starts)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        yield n
        d = g.nodes[n]
        if d["op_class"] in FUSABLE_CLASSES and d["phase"] == "forward":
            todo.extend(g.successors(n) if forward else g.predecessors(n))


def _expanding_gemm(g: nx.DiGraph, members: set[int], rows: int) -> int | None:
    """The one linear GEMM of ``rows`` rows (every cached token) whose output reaches the
    attention's ``members`` through memory-bound ops only; None unless exactly one."""
    starts = [p for n in members for p in g.predecessors(n)]
    found = {n for n in _reach(g, starts, False, members)
             if g.nodes[n]["op"] in _GEMMS and op_mnk(g.nodes[n])[0] == rows}
    return next(iter(found)) if len(found) == 1 else None


def _head_split(g: nx.DiGraph, proj: int, width: int) -> tuple[int, int] | None:
    """(dn, dv): the two widths a split after ``proj`` cuts each head's ``width`` into."""
    for n in _reach(g, g.successors(proj), True):
        d = g.nodes[n]
        if d["op"] in ("aten.split_with_sizes", "aten.split") and len(d["out_shapes"]) == 2:
            a, b = (shape[-1] for shape in d["out_shapes"])
            if a + b == width:
                return int(a), int(b)
    return None


def _expanded(g: nx.DiGraph, proj: int, members: set[int]) -> frozenset[int]:
    """The memory-bound ops an absorbed step does not run: what carries the projection's
    output to the attention (views, splits, copies into the keys) and the copies that feed
    only those or the projection (the latent's and the rotary keys' cache appends, views)."""
    after = {n for n in _reach(g, g.successors(proj), True, members)
             if g.nodes[n]["op_class"] in FUSABLE_CLASSES}
    # keep what only the chain, the attention or nothing reads
    _prune(after, lambda n, kept: set(g.successors(n)) <= kept | members)
    before: set[int] = set()
    todo = [p for n in (*after, proj) for p in g.predecessors(n)]
    while todo:
        n = todo.pop()
        d = g.nodes[n]
        if n in before or n in after or n in members or d["phase"] != "forward" or \
                not (_view(d) or _appends(g, n)) or \
                not set(g.successors(n)) <= after | before | {proj}:
            continue
        before.add(n)
        todo.extend(g.predecessors(n))
    return frozenset(after | before)


def _absorb_latent(g: nx.DiGraph, out: nx.DiGraph, proj: int, c: int, gone: frozenset[int],
                   dims: tuple) -> None:
    """Price ``proj`` and the attention ``c`` absorbed (``mla``); ``gone`` runs nowhere."""
    batch, heads, r, dr, dn, dv, sk = dims
    p = g.nodes[proj]
    size = ITEMSIZE.get(p["out_dtypes"][0], 2)
    tokens = [e["bytes"] for _, _, e in g.in_edges(proj, data=True)
              if (e.get("shape") or [0])[0] == batch * sk]
    latent = sum(tokens)  # the cached latent as the projection read it
    weight = max(0.0, out.nodes[proj]["bytes_read"] - latent)
    out.nodes[proj].update(
        flops=2 * batch * heads * r * (dn + dv), gemm_shape=[batch * heads, r],
        bytes_read=int(weight + batch * heads * (dn + r) * size),
        bytes_written=batch * heads * (r + dv) * size, launches=2.0)
    out.nodes[c].update(
        flops=2 * batch * heads * sk * (2 * r + dr), attention_shape=[r + dr, 1, sk, 0, 0],
        bytes_read=int(batch * heads * (r + dr) * size + latent * (r + dr) / r),
        bytes_written=batch * heads * r * size, out_shapes=[[batch, heads, 1, r]], kv_heads=1)
    for n in gone:
        out.nodes[n].update(bytes_read=0, bytes_written=0, flops=0, launches=0.0)


def _group_ratio(g: nx.DiGraph, c: int, chain=()) -> float:
    """Query heads per KV head of an attention node: its output's heads over the fewest heads
    of a 4-D tensor it or its ``chain`` reads (the keys and values of grouped-query attention,
    before any copy to the query heads); 1 for others."""
    out = g.nodes[c]["out_shapes"]
    heads = out[0][1] if out and len(out[0]) == 4 else 0
    kv = [e["shape"][1] for n in (*chain, c) for _, _, e in g.in_edges(n, data=True)
          if len(e.get("shape") or ()) == 4 and 0 < e["shape"][1] < heads]
    return heads / min(kv) if kv and heads else 1.0


def _head_dim(g: nx.DiGraph, c: int) -> int:
    """The head dim of an attention node's (B, H, T, D) output; 0 for another shape."""
    out = g.nodes[c]["out_shapes"]
    return int(out[0][3]) if out and len(out[0]) == 4 else 0


def _absorb(g: nx.DiGraph, out: nx.DiGraph, prologues: dict[int, list[int]],
            per_head: bool = False, xqa8: bool = False) -> None:
    """Each compute node of ``out`` reads what its chain reads from outside and carries the
    chain's FLOPs; the chain's nodes move nothing and launch nothing. ``per_head``: an
    attention node reads its chain's (the cache's) bytes once per query head of a group;
    ``xqa8``: but once per KV head where the group and head dim are ``_XQA8``."""
    classes = g.graph.get("module_classes", {})
    for c, chain in prologues.items():
        inside = set(chain) | {c}
        # the cache once per query head: what the chain reads, or the views of the cache the
        # kernel itself reads
        ratio = _group_ratio(g, c, chain) if per_head and g.nodes[c]["op_class"] == "attention" \
            else 1.0
        if xqa8 and (ratio, _head_dim(g, c)) == _XQA8:
            ratio = 1.0
        # a grouped GEMM's operand holds every group, of which it reads those its rows reach:
        # so does the chain that unpacks it inside the kernel
        grouped = g.nodes[c].get("grouped") or ()
        reach = grouped[3] / grouped[0] if grouped else 1.0
        read = packed = 0.0
        for n in (*chain, c):
            internal_in = state_in = 0.0
            for p, _, e in g.in_edges(n, data=True):
                origin, least, _ = _view_path(g, p, inside)
                if origin in inside:  # a GEMM reads a broadcast view of a member's output
                    # (a weight expanded over a batched matmul's batch) once: its bytes
                    gemm = n == c and g.nodes[c]["op_class"] == "matmul"
                    internal_in += (min(float(e["bytes"]), least) if gemm else e["bytes"]) * (
                        reach if n == c else 1.0)
                elif origin == -1:  # a view of state read in the kernel: its storage,
                    # however broadcast (GQA's expanded heads)
                    store = min(float(e["bytes"]), least)
                    internal_in += e["bytes"] - store
                    state_in += store
            own = max(0, g.nodes[n]["bytes_read"] - internal_in)
            if n != c:
                packed += own
            read += own * ratio if n != c else own + state_in * (ratio - 1)
        d = out.nodes[c]
        if grouped and chain:  # the packed bytes of the groups reached; every group's apart
            read -= packed * (1.0 - reach)
            d["grouped"] = [grouped[0], grouped[1], int(packed), grouped[3]]
            if classes.get(d["module"], "").startswith("Fp8"):
                d["compute_dtype"] = "float8_e4m3fn"  # an fp8 grouped GEMM
        d["bytes_read"] = int(read)
        if d["op_class"] != "matmul":  # the cache's casts, per element read
            d["flops"] = g.nodes[c]["flops"] + sum(g.nodes[n]["flops"] for n in chain)
        if classes.get(d["module"], "").startswith("Sparse") and d["op_class"] == "matmul":
            d["sparsity"] = "2:4"
        for n in chain:
            out.nodes[n].update(bytes_read=0, bytes_written=0, flops=0, launches=0.0)


def _groups(g: nx.DiGraph, tags: dict[int, tuple]) -> list[list[int]]:
    level = _levels(g, set(tags))  # NB: a node of another family on a path counts as free
    parent = {n: n for n in tags}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in g.edges:
        if u not in tags or v not in tags or tags[u] != tags[v] or level[u] != level[v]:
            continue
        du, dv = g.nodes[u], g.nodes[v]
        if du["phase"] == dv["phase"] and du.get("repeat_group") == dv.get("repeat_group"):
            parent[find(u)] = find(v)
    out: dict[int, list[int]] = {}
    for n in tags:
        out.setdefault(find(n), []).append(n)
    return [sorted(m, key=lambda v: g.nodes[v]["index"]) for m in out.values()]


def _view_path(g: nx.DiGraph, n: int, inside: set[int]) -> tuple[int, float, list | None]:
    """(origin, fewest bytes on the way, stored shape): the node whose kernel wrote what ``n``
    outputs, a member view (it writes nothing) followed to its largest input's producer (-1: a
    view of a parameter, an input or other state, outside), the fewest bytes of the edges
    walked (what a broadcast view, an ``expand`` of a KV head to its query heads, reads of its
    storage; inf when none was walked) and the shape of the last edge walked (the tensor as
    stored; None when none was walked)."""
    least, seen, shape = float("inf"), set(), None
    while n in inside and g.nodes[n]["bytes_written"] == 0 and n not in seen:
        seen.add(n)
        ins = list(g.in_edges(n, data=True))
        if not ins:
            return -1, least, shape
        edge = max(ins, key=lambda e: e[2]["bytes"])
        least = min(least, float(edge[2]["bytes"]))
        shape = list(edge[2].get("shape") or [])
        n = edge[0]
    return n, least, shape


def _origin(g: nx.DiGraph, n: int, inside: set[int]) -> int:
    """``_view_path``'s origin: a tensor read through a view is external when its storage was
    written outside the group."""
    return _view_path(g, n, inside)[0]


def _escapes(g: nx.DiGraph, n: int, inside: set[int], depth: int = 0) -> bool:
    """Whether what ``n`` writes is read outside the group (or by nothing): a reader outside,
    or a member view (it writes nothing) whose own readers are outside."""
    succ = list(g.successors(n))
    if not succ:
        return True
    for s in succ:
        if s not in inside:
            return True
        if g.nodes[s]["bytes_written"] == 0 and depth < 16 and _escapes(g, s, inside, depth + 1):
            return True
    return False


def fuse_graph(g: nx.DiGraph, fusions=()) -> nx.DiGraph:
    """A copy of ``g`` whose ``bytes_read``/``bytes_written`` are those of the kernels a
    runtime fusing ``fusions`` (``runtime.Fusion`` values) launches, each node with
    ``launches`` (kernels it stands for)."""
    fusions = frozenset(Fusion(f) for f in fusions)
    out = g.copy()
    for _, d in out.nodes(data=True):
        d["launches"] = 1.0
    if not fusions:
        return out
    plan = _plan(g, fusions)
    prologues, readers, masks = plan.prologues, plan.readers, plan.masks
    for members in _groups(g, _tags(g, fusions, plan.absorbed | readers | plan.unmade)):
        if len(members) < 2:
            continue
        inside = set(members)
        read = written = 0
        for n in members:
            d = g.nodes[n]
            internal_in = sum(e["bytes"] for p, _, e in g.in_edges(n, data=True)
                              if _origin(g, p, inside) in inside)
            read += max(0, d["bytes_read"] - internal_in)
            if _escapes(g, n, inside):
                written += d["bytes_written"]
        flops = sum(g.nodes[n]["flops"] for n in members)
        for i, n in enumerate(members):
            d = out.nodes[n]
            d["bytes_read"], d["bytes_written"] = (read, written) if i == 0 else (0, 0)
            d["flops"] = flops if i == 0 else 0  # the kernel overlaps its math and its traffic
            d["launches"] = 1.0 if i == 0 else 0.0
    _absorb(g, out, prologues,
            per_head=bool(fusions & {Fusion.KV_CACHE_PER_HEAD, Fusion.KV_CACHE_PER_HEAD_XQA8}),
            xqa8=Fusion.KV_CACHE_PER_HEAD_XQA8 in fusions)
    for c, d in g.nodes(data=True):  # the KV heads each attention kernel reads as stored
        out_shape = d["out_shapes"][0] if d["op_class"] == "attention" and d["out_shapes"] \
            else ()
        if len(out_shape) == 4:
            ratio = _group_ratio(g, c, prologues.get(c, ()))
            out.nodes[c]["kv_heads"] = max(1, round(out_shape[1] / ratio))
    for n in masks:
        out.nodes[n].update(bytes_read=0, bytes_written=0, flops=0, launches=0.0)
    for u, c, e in g.edges(data=True):
        if u in masks and c not in masks | readers:  # an attention no longer reads the mask
            out.nodes[c]["bytes_read"] = max(0, out.nodes[c]["bytes_read"] - e["bytes"])
    for s, members, last in plan.explicit:
        _fold_attention(g, out, s, [*prologues.get(s, ()), *members], last, masks)
    for proj, c, _, gone, dims in plan.latent:
        _absorb_latent(g, out, proj, c, gone, dims)
    if Fusion.QKV in fusions:
        for members in _sibling_projections(g):
            _merge_gemms(g, out, members)
    return out


def _sibling_projections(g: nx.DiGraph) -> list[list[int]]:
    """Forward GEMMs of the linears of one attention module that read the same input (the
    tensors their linears' ops read from outside the linear), each list of two or more in
    execution order."""
    classes = g.graph.get("module_classes", {})
    by_module: dict[str, list[int]] = {}
    for n, d in g.nodes(data=True):
        by_module.setdefault(d["module"], []).append(n)
    groups: dict[tuple, list[int]] = {}
    for n, d in g.nodes(data=True):
        parent = d["module"].rpartition(".")[0]
        if (d["op"] not in _GEMMS or d["phase"] != "forward" or not d["module"]
                or "Attention" not in classes.get(parent, "")):
            continue
        own = set(by_module[d["module"]])
        reads = frozenset(o for v in own if g.nodes[v]["phase"] == "forward"
                          for o in g.nodes[v]["uses_storage_of"] if o not in own)
        m, _, k = op_mnk(d)
        if reads and m > 0:
            key = (parent, d.get("repeat_group"), reads, m, round(k))
            groups.setdefault(key, []).append(n)
    return [sorted(v, key=lambda x: g.nodes[x]["index"]) for v in groups.values()
            if len({g.nodes[x]["module"] for x in v}) > 1]


def _merge_gemms(g: nx.DiGraph, out: nx.DiGraph, members: list[int]) -> None:
    """``members`` (GEMMs of one input) as one GEMM on the first: FLOPs and bytes summed, the
    input (each one's operand of ``m x k``: the lightest in-edge of that shape) read once."""
    m, _, k = op_mnk(g.nodes[members[0]])
    width = 0
    again = 0.0
    for i, n in enumerate(members):
        width += g.nodes[n]["out_shapes"][0][-1]
        if i:
            edges = [e["bytes"] for _, _, e in g.in_edges(n, data=True)
                     if list(e.get("shape") or ()) == [m, round(k)]]
            again += min(edges, default=0)
    first = out.nodes[members[0]]
    for key in ("flops", "bytes_written", "bytes_read"):
        first[key] = sum(out.nodes[n][key] for n in members) - (again if key == "bytes_read" else 0)
    first["gemm_shape"] = [m, width]
    for n in members[1:]:
        out.nodes[n].update(bytes_read=0, bytes_written=0, flops=0, launches=0.0)


def executed_graph(g: nx.DiGraph, runtime) -> nx.DiGraph:
    """``g`` as ``runtime`` (a RuntimeProfile) executes it: fused as its ``fusions`` say, and
    the optimizer's ops sharing one kernel per kind of op when it runs foreach. NB: torch's
    multi-tensor apply launches a kernel per chunk of tensors; one per op kind is its floor."""
    out = fuse_graph(g, runtime.fusions)
    if runtime.optimizer is OptimizerKernel.FOREACH:
        opt = [d for _, d in out.nodes(data=True) if d["phase"] == "optimizer"]
        if opt:
            share = len({d["op"] for d in opt}) / sum(d["count"] for d in opt)
            for d in opt:
                d["launches"] = share
    return out
