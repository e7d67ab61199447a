"""The recording half of a capture: a dispatch mode that records every aten op of the step.

:class:`Recorder` is a ``TorchDispatchMode`` entered above ``FakeTensorMode``: each op reaches it
first, runs below it (through :class:`~archcost.trace.values.Values`, which handles the ops a
fake tensor cannot run alone) and is recorded as an :class:`OpRecord` with its arguments as
:class:`TensorMeta`. :class:`CaptureState` holds what one capture accumulates: the records, the
phase, the module stack, tensor identities, the autograd nodes still to tag with their module,
and the progress the watchdog reads.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_map
from torch.utils.weak import WeakIdKeyDictionary

from archcost.trace.records import OpRecord, Phase, TensorMeta
from archcost.trace.repeats import RepeatTracker

__all__ = ["META_KEY", "CaptureState", "Recorder", "dtype_name", "flatten"]

META_KEY = "archcost_module"
_SKIP_NAMESPACES = ("prim", "profiler")
_GROUPED = {torch.ops.aten._grouped_mm, torch.ops.aten._scaled_grouped_mm}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class Recorder(TorchDispatchMode):
    """Records each aten op into the capture state (``record=False``: runs it through the
    state's values alone, as for the example inputs, which are no part of the step)."""

    def __init__(self, state: CaptureState, record: bool = True):
        super().__init__()
        self.state = state
        self.recording = record

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace in _SKIP_NAMESPACES:  # prim.device etc. run mid-op: not ops
            return func(*args, **kwargs)
        st = self.state
        st.check()  # the watchdog asked the capture to stop
        st.current_op = func
        values = st.values
        if not self.recording:
            return func(*args, **kwargs) if values is None else values.run(func, args, kwargs)
        st.flush_pending(views=not func.is_view)
        out = func(*args, **kwargs) if values is None else values.run(func, args, kwargs)
        st.record(func, args, kwargs, out)
        return out


def _addressed(t: torch.Tensor) -> int:
    """Distinct elements of a broadcast view (stride-0 dims of size > 1); 0 otherwise."""
    try:
        strides = t.stride()
    except Exception:  # no strides (sparse, nested)
        return 0
    if not any(st == 0 and n > 1 for n, st in zip(t.shape, strides)):
        return 0
    n = 1
    for size, st in zip(t.shape, strides):
        if st != 0:
            n *= int(size)
    return n


class CaptureState:
    """Mutable bookkeeping of one capture (lives only inside :func:`capture_step`)."""

    def __init__(self, repeats: RepeatTracker):
        self.records: list[OpRecord] = []
        self.phase = Phase.FORWARD
        self.module_stack: list[str] = [""]
        # forward module calls as made: (path, index of the next record)
        self.module_calls: list[tuple[str, int]] = []
        self.optimizer_module: str = ""
        # Tensor identities without holding the tensors: a held tensor would change what eager
        # autograd does (AccumulateGrad copies a gradient someone else references instead of
        # stealing it). Storages are held, so their addresses stay unique for the capture.
        self.tids = WeakIdKeyDictionary()
        self.next_tid = 0
        self.keep_storages: list[Any] = []
        self.pending: list[tuple[torch.Tensor, str, int]] = []
        self.producer_module: dict[int, str] = {}
        self.storage_producer: dict[int, str] = {}  # storage -> module of its first forward op
        self.repeats = repeats
        self.sac_saved: dict[str, int] = {}  # module -> bytes cached by selective checkpointing
        self.sac_decision: str | None = None
        self.saved_storages: set[int] = set()
        self.sac_counted: dict[int, tuple[str, int, int, int]] = {}  # storage -> module, bytes, numel, storage
        self.values = None  # archcost.trace.values.Values: known values, assumptions, fallbacks
        # progress, read by the watchdog: the first op of each (phase, module), or a new stage
        self.reached: set[tuple[Phase, str]] = set()
        self.progress_at = time.monotonic()
        self.stage = "building the model"
        self.current_op = None
        self.check = _nothing  # the watchdog's check (raises Stalled once it fired)

    def progress(self, stage: str | None = None) -> None:
        if stage is not None:
            self.stage = stage
        self.progress_at = time.monotonic()

    def where(self) -> str:
        """The last op recorded, its module and phase, and the op running now (if another)."""
        if not self.records:
            now = f" (op {self.current_op})" if self.current_op is not None else ""
            return f"while {self.stage}{now}"
        last = self.records[-1]
        text = (f"last op {last.overload} in module '{last.module or '(model)'}' "
                f"({last.phase.value})")
        if self.current_op is not None and str(self.current_op) != last.overload:
            text += f", then {self.current_op}"
        return text

    def uncount_cached(self, t: torch.Tensor) -> None:
        """A block's output is the next block's input, which that checkpoint keeps: count once."""
        entry = self.sac_counted.pop(t.untyped_storage()._cdata, None)
        if entry is not None:
            module, nbytes, _, _ = entry
            self.sac_saved[module] -= nbytes

    # --- tensor metadata -------------------------------------------------------------------
    def tid(self, t: torch.Tensor) -> int:
        """A number for ``t`` unique within the capture (never reused, unlike ``id``)."""
        tid = self.tids.get(t)
        if tid is None:
            self.next_tid += 1
            tid = self.tids[t] = self.next_tid
        return tid

    def meta(self, t: torch.Tensor) -> TensorMeta:
        try:
            st = t.untyped_storage()
            storage = st._cdata
            self.keep_storages.append(st)
        except Exception:  # sparse or otherwise storage-less tensors
            storage = -self.tid(t)
        return TensorMeta(
            shape=tuple(int(d) for d in t.shape),
            dtype=dtype_name(t.dtype),
            itemsize=t.element_size(),
            storage=storage,
            is_view=bool(t._is_view()),
            tid=self.tid(t),
            addressed=_addressed(t),
        )

    def convert(self, obj):
        def conv(x):
            if isinstance(x, torch.Tensor):
                return self.meta(x)
            if isinstance(x, torch.dtype):
                return dtype_name(x)
            if isinstance(x, (torch.device, torch.layout, torch.memory_format)):
                return str(x)
            return x

        return tree_map(conv, obj)

    # --- attribution -----------------------------------------------------------------------
    def current_module(self) -> str | None:
        """The owning module path, or None in backward when the running node is not ours."""
        if self.phase is Phase.OPTIMIZER:
            return self.optimizer_module
        if self.phase is Phase.BACKWARD:
            node = torch._C._current_autograd_node()
            return None if node is None else node.metadata.get(META_KEY)
        return self.module_stack[-1]

    def flush_pending(self, views: bool = True) -> None:
        """Tag the autograd nodes of recent ops' outputs with their module.

        Autograd sets ``grad_fn`` only after the op returns through every mode, and another
        mode (selective checkpointing's cache) may run ops before that: an output without a
        node yet is retried at the next few ops.

        ``views=False`` leaves views pending: reading a view's ``grad_fn`` takes the view's lock,
        and autograd holds that lock while it replays the view op to rebuild the ``grad_fn``
        after an in-place op on the view (that replay dispatches here); reading it then would
        wait forever. Only view ops are replayed, so only during a view op is a view skipped.
        """
        keep = []
        for entry in self.pending:
            t, module, age = entry
            if not views and t._is_view():
                keep.append(entry)
                continue
            fn = t.grad_fn
            if fn is not None:
                if META_KEY not in fn.metadata:
                    fn.metadata[META_KEY] = module
            elif age < 4:
                keep.append((t, module, age + 1))
        self.pending = keep

    def record(self, func, args, kwargs, out) -> None:
        module = self.current_module()
        reached = (self.phase, module)
        if reached not in self.reached:
            self.reached.add(reached)
            self.progress_at = time.monotonic()
        a = self.convert(args)
        k = self.convert(kwargs)
        flat_out = [x for x in flatten(out) if isinstance(x, torch.Tensor)]
        outs = tuple(self.meta(x) for x in flat_out)
        engine = module is None
        if engine:
            # engine-level ops (gradient accumulation, seeding): follow the producer of an input
            module = ""
            for x in flatten(args):
                if isinstance(x, torch.Tensor) and self.tid(x) in self.producer_module:
                    module = self.producer_module[self.tid(x)]
                    break
        for x in flat_out:
            self.producer_module[self.tid(x)] = module
        if self.sac_decision == "save" and self.phase is Phase.FORWARD:
            for o in outs:  # each cached storage once, whatever view or in-place op holds it
                if o.storage not in self.sac_counted:
                    self.sac_counted[o.storage] = (module, o.nbytes, o.numel, o.storage)
                    self.sac_saved[module] = self.sac_saved.get(module, 0) + o.nbytes
        self.sac_decision = None
        if self.phase in (Phase.FORWARD, Phase.RECOMPUTE):
            self.pending.extend((x, module, 0) for x in flat_out)
        if self.phase is Phase.FORWARD:
            for o in outs:
                self.storage_producer.setdefault(o.storage, module)
        packet = str(func._overloadpacket)
        self.records.append(
            OpRecord(
                op=packet if packet.startswith(func.namespace) else f"{func.namespace}.{packet}",
                overload=str(func),
                phase=self.phase,
                module=module,
                args=tuple(a),
                kwargs=dict(k),
                outputs=outs,
                named=_bind(func, a, k),
                repeat_group=self.repeats.group_of(module),
                index=len(self.records),
                extra={**({"grad_sum": True} if engine else {}),
                       **self._group_rows(func, args, kwargs)},
            )
        )

    def _group_rows(self, func, args, kwargs) -> dict:
        """``{"group_rows": (...)}``: a grouped GEMM's rows per group, where the values of its
        offsets (each group's end row) are known (a router's picks under the routing
        assumption, sorted and counted); a group without rows reads no weights. ``{}``
        otherwise."""
        if func._overloadpacket not in _GROUPED or self.values is None:
            return {}
        offs = _bind(func, args, kwargs).get("offs")
        if not isinstance(offs, torch.Tensor) or offs.dim() != 1:
            return {}
        with _disable_current_modes():
            ends = self.values.known(offs)
            if ends is None:
                return {}
            ends = [int(x) for x in ends.tolist()]
        return {"group_rows": tuple(b - a for a, b in zip([0, *ends], ends))}


def _nothing() -> None:
    return None


def _bind(func, args, kwargs) -> dict:
    """Arguments by schema name, defaults included."""
    named = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args) and not arg.kwarg_only:
            named[arg.name] = args[i]
        elif arg.name in kwargs:
            named[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            named[arg.name] = arg.default_value
    return named


def flatten(obj):
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from flatten(x)
    else:
        yield obj
