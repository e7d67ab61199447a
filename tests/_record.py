"""A minimal op recorder for the rule tests, independent of the project's tracer.

:class:`Recorder` is a ``TorchDispatchMode`` that turns every aten op executed under it into an
:class:`OpRecord` with tensors replaced by :class:`TensorMeta`. :func:`run_both` runs a workload
once under ``FlopCounterMode`` and the recorder together (the recorder innermost, so both see the
same ops) and returns FlopCounterMode's per-op counts next to the records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from archcost.trace.recorder import _bind as bind_arguments  # as the capture binds them
from archcost.trace.records import OpRecord, Phase, TensorMeta


def _storage(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage()._cdata
    except Exception:  # storage-less tensors
        return id(t)


def meta(t: torch.Tensor, is_view: bool | None = None) -> TensorMeta:
    return TensorMeta(
        shape=tuple(int(d) for d in t.shape),
        dtype=str(t.dtype).removeprefix("torch."),
        itemsize=t.element_size(),
        storage=_storage(t),
        is_view=t._base is not None if is_view is None else is_view,
        tid=id(t),
    )


class Recorder(TorchDispatchMode):
    """Record every op as an OpRecord. ``bind`` fills ``OpRecord.named`` (the capture does);
    without it rules must find arguments by schema position."""

    def __init__(self, bind: bool = False):
        super().__init__()
        self.bind = bind
        self.records: list[OpRecord] = []
        self._keep: list[torch.Tensor] = []  # keep tensors alive so id() stays unique

    def _conv(self, x):
        if isinstance(x, torch.Tensor):
            self._keep.append(x)
            return meta(x)
        if isinstance(x, torch.dtype):
            return str(x).removeprefix("torch.")
        if isinstance(x, (torch.device, torch.layout, torch.memory_format)):
            return str(x)
        return x

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        in_storages = {_storage(t) for t in tree_flatten((args, kwargs))[0]
                       if isinstance(t, torch.Tensor)}
        outs = []
        for o in tree_flatten(out)[0]:
            if isinstance(o, torch.Tensor):
                self._keep.append(o)
                outs.append(meta(o, o._base is not None or _storage(o) in in_storages))
        a, k = tree_map(self._conv, args), tree_map(self._conv, kwargs)
        packet = str(func._overloadpacket)
        self.records.append(OpRecord(
            op=packet if packet.startswith(func.namespace) else f"{func.namespace}.{packet}",
            overload=str(func),
            phase=Phase.FORWARD,
            module="",
            args=tuple(a),
            kwargs=dict(k),
            outputs=tuple(outs),
            named=bind_arguments(func, a, k) if self.bind else {},
            index=len(self.records),
        ))
        return out


def run_both(fn: Callable[[], object], bind: bool = False, custom_mapping=None
             ) -> tuple[dict[str, int], list[OpRecord]]:
    """FlopCounterMode's FLOPs per op packet, and the records of the same run."""
    with FlopCounterMode(display=False, custom_mapping=custom_mapping or {}) as fc:
        with Recorder(bind) as rec:
            fn()
    counts = {str(op): int(n) for op, n in fc.get_flop_counts().get("Global", {}).items()}
    return counts, rec.records


def record(fn: Callable[[], object], bind: bool = False) -> list[OpRecord]:
    with Recorder(bind) as rec:
        fn()
    return rec.records


def flops_by_op(records: list[OpRecord], cost) -> Counter:
    """Sum of ``cost(rec).flops`` per op packet."""
    out: Counter = Counter()
    for r in records:
        out[r.op] += cost(r).flops
    return out
