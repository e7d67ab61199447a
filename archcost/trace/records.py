"""Plain records that a capture produces and the op rules read.

A capture (``capture.py``) turns one training step into a list of :class:`OpRecord`, one per aten
op executed, with every tensor argument replaced by a :class:`TensorMeta`. Nothing here imports
torch, so the op rules (``rules.py``) are pure functions of shapes and can be tested without it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from math import prod


class Phase(str, enum.Enum):
    """Which part of a training step executed an op."""

    FORWARD = "forward"
    BACKWARD = "backward"
    OPTIMIZER = "optimizer"
    RECOMPUTE = "recompute"


class OpClass(str, enum.Enum):
    """Coarse op classes used for per-class totals and efficiency curves."""

    MATMUL = "matmul"
    ATTENTION = "attention"
    CONV = "conv"
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    NORM = "norm"
    EMBEDDING = "embedding"
    DATA_MOVEMENT = "data-movement"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """What the cost model needs to know about one tensor argument or result.

    ``storage`` identifies the underlying storage (views of one tensor share it);
    ``is_view`` is true when the tensor does not own fresh memory.
    """

    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"
    itemsize: int
    storage: int = 0
    is_view: bool = False
    tid: int = 0  # identity of the tensor object within one capture (edges of the graph)
    # elements the tensor addresses when fewer than it holds (a broadcast view: stride-0
    # dims); 0 = numel
    addressed: int = 0

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def addressed_bytes(self) -> int:
        """Bytes of the distinct elements the tensor addresses (a broadcast operand's memory
        is read once: the repeats hit cache)."""
        return (self.addressed or self.numel) * self.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclass(slots=True)
class OpRecord:
    """One executed aten op.

    ``args``/``kwargs`` are the op's arguments with tensors replaced by TensorMeta (lists of
    tensors become lists of TensorMeta); ``outputs`` are the tensors it returned (flattened).
    ``named`` binds every argument (positional or keyword, defaults filled in) to its schema
    name, so rules can read ``named["is_causal"]`` whatever the call looked like.
    ``count`` is how many times the op stands for (repeated blocks are traced once).
    """

    op: str  # overload packet name, e.g. "aten.mm" ; full overload in ``overload``
    overload: str  # e.g. "aten.mm.default"
    phase: Phase
    module: str  # innermost owning module path, "" for the root
    args: tuple
    kwargs: dict
    outputs: tuple[TensorMeta, ...]
    named: dict = field(default_factory=dict)  # every argument by its schema name
    count: int = 1
    repeat_group: str = ""  # non-empty when this op belongs to a repeated block representative
    index: int = 0  # execution order within the capture
    extra: dict = field(default_factory=dict)


def iter_tensors(obj):
    """Yield every TensorMeta inside nested tuples/lists/dicts of args."""
    if isinstance(obj, TensorMeta):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from iter_tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from iter_tensors(x)
