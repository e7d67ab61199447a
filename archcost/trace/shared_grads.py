"""Gradient sums of tensors shared by the instances of a repeated block, under dedupe.

A tensor made outside a repeated block and read by every instance (an encoder output) gets one
gradient from each read; autograd sums them into one, an add per extra contribution. Traced
once and counted ``k`` times, the block gives ``g`` contributions standing for ``k * g``, whose
``k * g - 1`` adds (plus one per read outside the block) the trace alone does not run.

:class:`SharedGrads` finds these tensors after forward (read by a deduplicated representative,
made outside it, with a ``grad_fn``), and hooks each one's ``grad_fn`` before backward: when the
summed gradient arrives, the chain of engine-level adds that made it is walked back to its
contributions, each standing for as many tensors as its module's repeat count. The adds are
then recounted so the chain stands for ``sum(contributions) - 1`` adds, with a record of our own
where the trace ran none (one contribution).
"""

from __future__ import annotations

from typing import Any

from archcost.trace.records import OpRecord, Phase, TensorMeta

__all__ = ["SharedGrads"]

_ADDS = ("aten.add.Tensor", "aten.add_.Tensor")


class SharedGrads:
    """Hooks on shared tensors' ``grad_fn`` (:meth:`install`), recounting after
    ``RepeatTracker.finalize`` (:meth:`recount`)."""

    def __init__(self, st):
        self.st = st
        self.finals: list[tuple[int, str]] = []  # (tid of the summed gradient, owner module)
        self.handles: list[Any] = []

    def install(self) -> None:
        st, repeats = self.st, self.st.repeats
        groups = {g.rep: g for g in repeats.groups if g.skipped}
        if not groups:
            return
        wanted: dict[int, str] = {}  # tid -> representative reading it
        for rec in st.records:
            if rec.phase is not Phase.FORWARD or rec.repeat_group not in groups:
                continue
            rep = rec.repeat_group
            flow_in = groups[rep].flow[0]
            for m in _metas((rec.args, rec.kwargs)):
                prod = st.producer_module.get(m.tid)
                if (prod is None or prod == rep or prod.startswith(rep + ".")
                        or m.storage == flow_in):
                    continue
                wanted.setdefault(m.tid, prod)
        for t, tid in list(st.tids.items()):
            if tid not in wanted or not getattr(t, "requires_grad", False):
                continue
            fn = t.grad_fn
            if fn is None:
                continue
            owner, nr = wanted[tid], t.output_nr

            def hook(grad_outputs, nr=nr, owner=owner):
                g = grad_outputs[nr] if nr < len(grad_outputs) else None
                if g is not None:
                    self.finals.append((st.tid(g), owner))

            self.handles.append(fn.register_prehook(hook))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def recount(self) -> None:
        """Set the gradient-sum adds of each shared tensor to what a run of every block does."""
        if not self.finals:
            return
        st = self.st
        made_by: dict[int, list[OpRecord]] = {}  # tid -> backward records writing it, in order
        for rec in st.records:
            if rec.phase is Phase.BACKWARD:
                for o in rec.outputs:
                    made_by.setdefault(o.tid, []).append(rec)

        def writer(tid: int, before: int) -> OpRecord | None:  # in-place adds rewrite a tid
            return next((r for r in reversed(made_by.get(tid, ())) if r.index < before), None)

        for tid, owner in self.finals:
            chain: list[OpRecord] = []
            leaves: list[OpRecord | None] = []
            todo = [(tid, len(st.records))]
            while todo:
                rec = writer(*todo.pop())
                if rec is not None and rec.extra.get("grad_sum") and rec.overload in _ADDS:
                    chain.append(rec)
                    todo.extend((m.tid, rec.index) for m in _metas(rec.args))
                else:
                    leaves.append(rec)
            contributions = sum(r.count if r is not None else 1 for r in leaves)
            need = contributions - 1
            have = sum(r.count for r in chain)
            if need == have:
                continue
            if chain:  # the first add takes the difference, the others stand for one each
                for r in chain[1:]:
                    r.count = 1
                chain[0].count = need - (len(chain) - 1)
            elif need > 0 and leaves[0] is not None:
                st.records.append(_add_record(st, tid, leaves[0], owner, need))


def _add_record(st, tid: int, leaf: OpRecord | None, module: str, count: int) -> OpRecord:
    """An add of the summed gradient's shape, standing for ``count`` adds autograd runs."""
    g = next((o for o in leaf.outputs if o.tid == tid), leaf.outputs[0])
    other = TensorMeta(g.shape, g.dtype, g.itemsize)  # another instance's: no identity (tid 0)
    st.next_tid += 1
    out = TensorMeta(g.shape, g.dtype, g.itemsize, storage=-st.next_tid, tid=st.next_tid)
    return OpRecord(op="aten.add", overload="aten.add.Tensor", phase=Phase.BACKWARD,
                    module=module, args=(g, other), kwargs={}, outputs=(out,),
                    named={"self": g, "other": other, "alpha": 1}, count=count,
                    index=len(st.records), extra={"grad_sum": True})


def _metas(obj):
    if isinstance(obj, TensorMeta):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _metas(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _metas(x)
