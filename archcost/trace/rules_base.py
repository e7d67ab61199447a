"""Registry, argument lookup and byte conventions shared by the op-rule modules.

The conventions themselves are stated once, in :mod:`archcost.trace.rules`. This module holds the
machinery: :func:`register` (one rule per op packet, duplicates raise, as in
``torch.utils.flop_counter.register_flop_formula``), :func:`arg` (an argument by schema name,
whether the capture bound it, passed it by keyword or positionally) and the byte functions
(``*_io``) that turn a record into (bytes read, bytes written).

Nothing here imports torch: rules are pure functions of :class:`TensorMeta` shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod

from archcost.trace.records import OpClass, OpRecord, TensorMeta, iter_tensors

__all__ = [
    "FOREACH_PREFIX", "POSITIONS", "RULES", "Entry", "alloc_io", "arg", "copy_io",
    "declare_positions", "default_io", "factory_io", "first_list", "first_tensor", "gather_io",
    "is_in_place", "kernel_numel", "numel", "out_numel", "out_of_place", "overwrite_io",
    "per_element", "register", "tensor_inputs", "view_io", "zero_flops",
]

FlopRule = Callable[[OpRecord], int]
ByteRule = Callable[[OpRecord], tuple[int, int]]
FOREACH_PREFIX = "aten._foreach_"
# results passed to ``.out``/``.grad_input`` overloads: written, not read
_OUT_KWARGS = frozenset({"out", "grad_input"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A registered rule: FLOPs of one occurrence, its class, and how it moves bytes."""

    flops: FlopRule
    op_class: OpClass
    io: ByteRule


RULES: dict[str, Entry] = {}


def register(*ops: str, op_class: OpClass, io: ByteRule | None = None):
    """Register one FLOP rule for several aten op packets (``"aten.mm"``); duplicates raise.

    ``io`` says how the op moves bytes (default: :func:`default_io`).
    """
    if len(set(ops)) != len(ops):
        raise ValueError(f"a FLOP rule lists an op twice: {sorted(ops)}")

    def deco(fn: FlopRule) -> FlopRule:
        taken = [op for op in ops if op in RULES]
        if taken:
            raise ValueError(f"a FLOP rule for {', '.join(taken)} is already registered")
        for op in ops:
            RULES[op] = Entry(fn, op_class, io or default_io)
        return fn

    return deco


# --- arguments by schema name -----------------------------------------------------------------
# Positional argument names per op packet (or per full overload where an overload shifts them),
# copied from the aten schemas of torch 2.13; tests check them against ``torch.ops`` schemas.
POSITIONS: dict[str, dict[str, int]] = {}


def declare_positions(table: dict[str, str]) -> None:
    """Add ``{"aten.op" or "aten.op.overload": "name0 name1 ..."}`` to :data:`POSITIONS`."""
    for key, names in table.items():
        if key in POSITIONS:
            raise ValueError(f"argument positions of {key} are already declared")
        POSITIONS[key] = {name: i for i, name in enumerate(names.split())}


def arg(rec: OpRecord, name: str, default=None):
    """Argument ``name`` of ``rec`` whatever the call looked like.

    Looks in ``rec.named`` (the capture binds every argument), then in ``rec.kwargs``, then at the
    schema position from :data:`POSITIONS` (the overload's own entry first). Dispatch drops trailing
    arguments equal to their default, so a position past the end of ``args`` means ``default``.
    """
    if name in rec.named:
        return rec.named[name]
    if name in rec.kwargs:
        return rec.kwargs[name]
    pos = POSITIONS.get(rec.overload.removesuffix("_out"), {}).get(name)  # no_stats_out: no_stats
    if pos is None:
        pos = POSITIONS.get(rec.op, {}).get(name)
    if pos is not None and pos < len(rec.args):
        return rec.args[pos]
    return default


# --- small shape helpers ----------------------------------------------------------------------
def numel(x) -> int:
    """Elements of a TensorMeta (0 for None or a non-tensor)."""
    return x.numel if isinstance(x, TensorMeta) else 0


def first_tensor(rec: OpRecord) -> TensorMeta | None:
    return next(iter_tensors(rec.args), None)


def first_list(rec: OpRecord) -> list[TensorMeta]:
    """The first argument that is a list of tensors (foreach and fused optimizer ops)."""
    for a in rec.args:
        if isinstance(a, (list, tuple)) and any(isinstance(t, TensorMeta) for t in a):
            return [t for t in a if isinstance(t, TensorMeta)]
    return []


def out_numel(rec: OpRecord) -> int:
    """Elements of the first output (the broadcast result); in-place ops without outputs use
    their first argument."""
    if rec.outputs:
        return rec.outputs[0].numel
    return numel(first_tensor(rec))


def per_element(cost: int, of: str | int = "output") -> FlopRule:
    """A rule of ``cost`` FLOPs per element of the output, of the first tensor argument
    (``"input"``) or of the positional argument at index ``of``."""

    def rule(rec: OpRecord) -> int:
        if of == "output":
            n = out_numel(rec)
        elif of == "input":
            n = numel(first_tensor(rec))
        else:
            n = numel(rec.args[of]) if len(rec.args) > of else 0
        return cost * n

    rule.__doc__ = f"{cost} FLOP(s) per element of the {of} tensor"
    return rule


def zero_flops(rec: OpRecord) -> int:
    return 0


# --- bytes ------------------------------------------------------------------------------------
def is_in_place(op: str) -> bool:
    """``aten.add_``, ``aten._foreach_mul_``: a trailing underscore that is not a dunder."""
    name = op.rpartition(".")[2]
    return name.endswith("_") and not name.endswith("__")


def out_of_place(op: str) -> str:
    """The op's out-of-place name: ``aten.add_`` -> ``aten.add``; others as they are."""
    return op[:-1] if is_in_place(op) else op


def _distinct(tensors) -> Iterator[TensorMeta]:
    """Each tensor once, by ``tid`` (tid 0 means unknown identity: never merged)."""
    seen: set[int] = set()
    for t in tensors:
        key = t.tid or id(t)
        if key not in seen:
            seen.add(key)
            yield t


def tensor_inputs(rec: OpRecord) -> list[TensorMeta]:
    """Distinct tensors the op reads: every tensor argument except ``out=``-style results."""
    kwargs = {k: v for k, v in rec.kwargs.items() if k not in _OUT_KWARGS}
    return list(_distinct(iter_tensors((rec.args, kwargs))))


def _written_outputs(rec: OpRecord, inputs: list[TensorMeta]) -> int:
    """Bytes of outputs that are fresh memory: not views, not aliases of an input's storage."""
    in_storages = {t.storage for t in inputs if t.storage}
    return sum(
        o.nbytes for o in _distinct(rec.outputs)
        if not o.is_view and not (o.storage and o.storage in in_storages)
    )


def _first_arg_bytes(rec: OpRecord) -> int:
    return sum(t.nbytes for t in _distinct(iter_tensors(rec.args[:1])))


def default_io(rec: OpRecord) -> tuple[int, int]:
    """Read every distinct input; write the fresh outputs, or the first argument when in place."""
    inputs = tensor_inputs(rec)
    read = sum(t.nbytes for t in inputs)
    if is_in_place(rec.op):
        return read, _first_arg_bytes(rec)
    return read, _written_outputs(rec, inputs)


def broadcast_io(rec: OpRecord) -> tuple[int, int]:
    """As :func:`default_io`, reading a broadcast operand (stride-0 dims: one weight matrix
    expanded over a batch, as ``matmul`` hands ``bmm`` a linear's weight for a
    non-contiguous 3-D input) once per distinct element: the repeats are served from cache."""
    inputs = tensor_inputs(rec)
    return sum(t.addressed_bytes for t in inputs), _written_outputs(rec, inputs)


def view_io(rec: OpRecord) -> tuple[int, int]:
    """Views (and aliases such as ``detach``) allocate and move nothing."""
    return 0, 0


def copy_io(rec: OpRecord) -> tuple[int, int]:
    """A copy reads its inputs and writes its outputs; when every output aliases an input
    (``contiguous`` of a contiguous tensor) it moves nothing."""
    inputs = tensor_inputs(rec)
    storages = {t.storage for t in inputs if t.storage}
    if rec.outputs and all(o.is_view or (o.storage and o.storage in storages) for o in rec.outputs):
        return 0, 0
    return default_io(rec)


def factory_io(rec: OpRecord) -> tuple[int, int]:
    """``zeros``, ``ones_like``, ``arange``: read nothing (a ``*_like`` input gives only its
    shape), write the result."""
    return 0, _written_outputs(rec, [])


def alloc_io(rec: OpRecord) -> tuple[int, int]:
    """``empty``, ``new_empty_strided``: memory is reserved, never touched."""
    return 0, 0


def overwrite_io(rec: OpRecord) -> tuple[int, int]:
    """``copy_``, ``fill_``, ``zero_``, ``_foreach_copy_``: the destination (first argument) is
    written without being read."""
    dest = {t.tid or id(t) for t in iter_tensors(rec.args[:1])}
    read = sum(t.nbytes for t in tensor_inputs(rec) if (t.tid or id(t)) not in dest)
    return read, _first_arg_bytes(rec)


def gather_io(rec: OpRecord) -> tuple[int, int]:
    """``embedding``, ``index_select``, ``gather``, ``index``: read the indices and only the
    gathered elements of the source (as many as the output holds), write the output."""
    source = first_tensor(rec)
    others = [t for t in tensor_inputs(rec) if t is not source]
    written = sum(o.nbytes for o in _distinct(rec.outputs))
    return sum(t.nbytes for t in others) + written, written


def kernel_numel(kernel, spatial_dims: int) -> int:
    """prod of a pooling ``kernel_size`` (an int or a list; a one-element list is square)."""
    if isinstance(kernel, int):
        return kernel**spatial_dims
    k = list(kernel)
    if len(k) == 1:
        k = k * spatial_dims
    return prod(k)
