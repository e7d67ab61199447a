"""The operator graph: ``networkx.DiGraph`` with aten ops as nodes and tensors as edges.

Node attributes (per occurrence; ``count`` says how many occurrences a node stands for):
``op``, ``overload``, ``phase``, ``module``, ``op_class``, ``flops``, ``bytes_read``,
``bytes_written``, ``out_bytes``, ``out_shapes``, ``out_dtypes``, ``compute_dtype`` (what the op
computes in: a scaled GEMM's operand format, else its first output's dtype), ``has_rule``, ``count``,
``repeat_group``, ``index`` (execution order), ``uses_storage_of`` (the nodes that allocated
the storages this op reads, views and in-place results followed to their allocation),
``attention_shape`` ([head dim, query length, key length, causal, backward] of attention ops,
what an attention kernel's table is read by; [] for other ops), ``efficiency_key`` (the op's
key among a profile's per-op curves: its name, with its form where forms run at different
speeds, :func:`efficiency_key`), ``grouped`` ([groups, rows, every group's weight bytes, groups
with rows] of a grouped GEMM over stacked weights whose rows per group are known, whose
``bytes_read`` holds only the groups with rows; [] for other ops).
Edge attributes: ``bytes``, ``dtype``, ``shape`` of the tensor flowing from producer to consumer.

The graph is the single source of truth about the model for every later stage; nothing re-traces.
"""

from __future__ import annotations

import json
from math import prod

import networkx as nx

from archcost.trace.records import OpRecord, iter_tensors
from archcost.trace.rules import compute_dtype, op_cost
from archcost.trace.rules_attention import attention_geometry
from archcost.trace.rules_matmul import grouped_weights

__all__ = ["build_graph", "expand_repeats", "graph_text", "efficiency_key", "key_op"]

_IN_PLACE_SUFFIX = "_"


# ops whose forms run at different speeds under one name: each form its own per-op curve
_FORMS = {"aten.gelu": "approximate", "aten.gelu_backward": "approximate"}
# row-wise ops (the tensor argument whose rows they work along, and the row's dim): on rows of
# fewer than _SHORT_ROW elements (one 512-bit vector of fp32) a CPU kernel leaves its vector
# path for a per-element one (a softmax over 1,024 rows of 8 took 146 us, of 16 17.5 us, on an
# AVX-512 core), so such a call is the op's "(short)" form; a concatenation copies one piece of
# each input per outer index, short when every piece is
_ROW_WISE = {"aten._softmax": ("self", "dim"), "aten._log_softmax": ("self", "dim"),
             "aten._softmax_backward_data": ("output", "dim"),
             "aten._log_softmax_backward_data": ("output", "dim"),
             "aten.topk": ("self", "dim"), "aten.cat": ("tensors", "dim")}
_SHORT_ROW = 16


def _row_elements(shape, dim: int, piece: bool) -> int:
    """Elements of one row of ``shape`` along ``dim`` (a concatenation's ``piece``: the
    contiguous run from ``dim`` on)."""
    if not shape:
        return 1
    d = dim % len(shape)
    return prod(shape[d:]) if piece else shape[d]


def _short_rows(rec) -> bool:
    arg, dim_name = _ROW_WISE[rec.op]
    tensors = [t for t in iter_tensors(rec.named.get(arg)) if t.shape]
    dim = rec.named.get(dim_name)  # ``named`` holds every argument, defaults filled in
    if not tensors or not isinstance(dim, int):
        return False
    piece = rec.op == "aten.cat"
    return max(_row_elements(t.shape, dim, piece) for t in tensors) < _SHORT_ROW


def efficiency_key(rec) -> str:
    """The op's key among a profile's per-op efficiency curves: its name, with its form where
    one name has forms of different speed (GELU's tanh approximation: ``aten.gelu(tanh)``,
    4.4x the exact form's time on an AVX-512 CPU, where a GPU streams both at its bandwidth;
    a row-wise op on rows shorter than one vector: ``aten._softmax(short)``)."""
    if rec.op in _ROW_WISE:
        return f"{rec.op}(short)" if _short_rows(rec) else rec.op
    form = rec.named.get(_FORMS[rec.op], "none") if rec.op in _FORMS else "none"
    return f"{rec.op}({form})" if form != "none" else rec.op


def key_op(key: str) -> str:
    """The op name of an efficiency key (``efficiency_key``): ``aten.gelu(tanh)`` -> aten.gelu."""
    return key.split("(")[0]


def build_graph(records: list[OpRecord], graph_attrs: dict | None = None) -> nx.DiGraph:
    """Apply the op rules to every record and connect producers to consumers."""
    g = nx.DiGraph(**(graph_attrs or {}))
    producer: dict[int, int] = {}
    storage_owner: dict[int, int] = {}  # storage -> node that allocated it
    for rec in records:
        cost = op_cost(rec)
        nid = rec.index
        uses = sorted(
            {storage_owner[t.storage] for t in iter_tensors((rec.args, rec.kwargs))
             if t.storage in storage_owner}
        )
        g.add_node(
            nid,
            op=rec.op,
            overload=rec.overload,
            phase=rec.phase.value,
            module=rec.module,
            op_class=cost.op_class.value,
            flops=int(cost.flops),
            bytes_read=int(cost.bytes_read),
            bytes_written=int(cost.bytes_written),
            out_bytes=_new_storage_bytes(rec),
            out_shapes=[list(o.shape) for o in rec.outputs],
            out_dtypes=[o.dtype for o in rec.outputs],
            compute_dtype=compute_dtype(rec),
            has_rule=bool(cost.has_rule),
            count=int(rec.count),
            repeat_group=rec.repeat_group,
            index=rec.index,
            uses_storage_of=uses,
            held_by_caller=bool(rec.extra.get("held_by_caller", False)),
            attention_shape=attention_geometry(rec),
            efficiency_key=efficiency_key(rec),
            grouped=list(grouped_weights(rec)),
        )
        seen: set[int] = set()
        for t in iter_tensors((rec.args, rec.kwargs)):
            src = producer.get(t.tid)
            if src is None or t.tid in seen or src == nid:
                continue
            seen.add(t.tid)
            g.add_edge(src, nid, bytes=t.nbytes, dtype=t.dtype, shape=list(t.shape))
        for o in rec.outputs:
            producer[o.tid] = nid
            storage_owner.setdefault(o.storage, nid)
        if rec.op.endswith(_IN_PLACE_SUFFIX):
            for t in iter_tensors(rec.args[:1]):  # the mutated tensor(s) now come from here
                producer[t.tid] = nid
    return g


def _new_storage_bytes(rec: OpRecord) -> int:
    """Bytes of the storages an op allocates: outputs that are neither views nor inputs."""
    inputs = {t.storage for t in iter_tensors((rec.args, rec.kwargs))}
    seen: set[int] = set()
    total = 0
    for o in rec.outputs:
        if o.is_view or o.storage in inputs or o.storage in seen:
            continue
        seen.add(o.storage)
        total += o.nbytes
    return total


def expand_repeats(g: nx.DiGraph, groups: dict[str, dict]) -> nx.DiGraph:
    """One node per executed op: every repeated-block node is copied once per layer.

    ``groups`` maps a representative module path (``layers.0``) to its summary with ``members``
    (the member paths) as produced by the capture. Copy ``k`` renames the module prefix to the
    k-th member and has ``count`` divided accordingly. Edges inside a block are copied per layer;
    an edge that crosses the block boundary is attached to every copy (each layer consumes and
    produces the same kind of tensor). NB: the copies are not chained layer to layer.
    """
    out = nx.DiGraph(**g.graph)
    copies: dict[int, list[int]] = {}
    next_id = max(g.nodes, default=-1) + 1
    for nid, data in g.nodes(data=True):
        rep = data.get("repeat_group") or ""
        members = groups.get(rep, {}).get("member_paths") if rep else None
        if not members or data["count"] % len(members):
            out.add_node(nid, **data)
            copies[nid] = [nid]
            continue
        per_copy = data["count"] // len(members)
        ids = []
        for k, member in enumerate(members):
            new_id = nid if k == 0 else next_id
            if k:
                next_id += 1
            module = member + data["module"][len(rep):]
            out.add_node(new_id, **{**data, "module": module, "count": per_copy, "layer": k})
            ids.append(new_id)
        copies[nid] = ids
    for u, v, data in g.edges(data=True):
        cu, cv = copies[u], copies[v]
        if len(cu) == len(cv):
            pairs = zip(cu, cv)
        else:
            pairs = [(a, b) for a in cu for b in cv]
        for a, b in pairs:
            out.add_edge(a, b, **data)
    return out


def graph_text(g: nx.DiGraph, suffix: str) -> str:
    """The graph as GraphML (``.graphml``) or node-link JSON (``.json``) text."""
    suffix = suffix.lower()
    if suffix == ".json":
        data = nx.node_link_data(g, edges="edges")
        return json.dumps(data, indent=1, default=str)
    if suffix == ".graphml":
        flat = nx.DiGraph()
        flat.graph.update({k: _scalar(v) for k, v in g.graph.items()})
        for nid, data in g.nodes(data=True):
            flat.add_node(nid, **{k: _scalar(v) for k, v in data.items()})
        for u, v, data in g.edges(data=True):
            flat.add_edge(u, v, **{k: _scalar(v) for k, v in data.items()})
        return "\n".join(nx.generate_graphml(flat))
    from archcost.errors import ConfigError

    raise ConfigError(f"--graph: unknown format {suffix!r}; name the file .graphml or .json")


def _scalar(v):
    if isinstance(v, (str, int, float, bool)):
        return v
    return json.dumps(v, default=str)
