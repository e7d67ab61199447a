"""Capture one training step of a model as a list of aten-op records, on fake tensors.

The model is built under the meta device, its parameters are swapped for FakeTensors on the CPU
device, and one step -- forward, loss, backward, optimizer -- runs under ``FakeTensorMode`` while a
``TorchDispatchMode`` records every aten op with its arguments as :class:`TensorMeta`. No tensor
holds data, so a 400B-parameter model costs what its op list costs.

Attribution:
- forward ops belong to the innermost module whose forward is running (module hooks);
- backward ops belong to the module of the forward op that created the autograd node now
  executing (``torch._C._current_autograd_node()``; the node's ``metadata`` carries the module);
- optimizer ops belong to the module owning the parameter being updated (one parameter at a time);
- ops run by a module forward during backward (activation checkpointing) are ``recompute``.

Repeated blocks: children of a ``ModuleList``/``Sequential`` with the same class and parameter
shapes form a group; the first one is traced, and each later one whose inputs have the same
shapes and dtypes returns its input unchanged, its cost being counted on the representative
(``OpRecord.count``). A block whose output is not shaped like its input is traced in full.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.weak import WeakIdKeyDictionary

from archcost.errors import ArchcostError, ModelFileError, TraceError
from archcost.loader import ModelSpec
from archcost.runtime import SelectiveRecompute
from archcost.trace.fake import quiet_fake_tensor_log, to_fake
from archcost.trace.lowp_linear import LowPrecisionLinears
from archcost.trace.optimizer import OPTIMIZERS, optimizer_step
from archcost.trace.precision import PrecisionPolicy
from archcost.trace.recompute import Recompute, block_caller
from archcost.trace.records import OpRecord, Phase, TensorMeta
from archcost.trace.repeats import RepeatTracker

__all__ = ["CaptureResult", "ParamInfo", "capture_step", "OPTIMIZERS", "Recompute"]

_META_KEY = "archcost_module"
_SKIP_NAMESPACES = ("prim", "profiler")


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    module: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    count: int  # how many parameters this entry stands for (repeated blocks)
    is_buffer: bool = False

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class CaptureResult:
    records: list[OpRecord]
    params: list[ParamInfo]
    saved: dict[str, int]  # module -> saved-activation bytes (already multiplied by counts)
    optimizer_state_bytes: int  # measured from the optimizer's state tensors, times counts
    master_weight_bytes: int
    method: str
    seconds: float
    repeat_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    module_classes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    saved_op_keys: frozenset = frozenset()  # (module, op, ordinal) of forward ops autograd saved
    # every saved storage as traced (module, bytes, elements, storage id), not multiplied by
    # repeat counts; the storage id is TensorMeta.storage of the op outputs that hold it
    saved_tensors: tuple[tuple[str, int, int, int], ...] = ()
    # low precision: weight caches, scales and amax histories (persistent), and the converted
    # linears' parameters (elements)
    lowp_state_bytes: int = 0
    lowp_params: int = 0


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class _Recorder(TorchDispatchMode):
    """Records each aten op into the capture state."""

    def __init__(self, state: _State):
        super().__init__()
        self.state = state

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace in _SKIP_NAMESPACES:  # prim.device etc. run mid-op: not ops
            return func(*args, **kwargs)
        st = self.state
        st.flush_pending()
        out = func(*args, **kwargs)
        st.record(func, args, kwargs, out)
        return out


class _State:
    """Mutable bookkeeping of one capture (lives only inside :func:`capture_step`)."""

    def __init__(self, repeats: RepeatTracker):
        self.records: list[OpRecord] = []
        self.phase = Phase.FORWARD
        self.module_stack: list[str] = [""]
        self.optimizer_module: str = ""
        # Tensor identities without holding the tensors: a held tensor would change what eager
        # autograd does (AccumulateGrad copies a gradient someone else references instead of
        # stealing it). Storages are held, so their addresses stay unique for the capture.
        self.tids = WeakIdKeyDictionary()
        self.next_tid = 0
        self.keep_storages: list[Any] = []
        self.pending: list[tuple[torch.Tensor, str, int]] = []
        self.producer_module: dict[int, str] = {}
        self.repeats = repeats
        self.sac_saved: dict[str, int] = {}  # module -> bytes cached by selective checkpointing
        self.sac_decision: str | None = None
        self.saved_storages: set[int] = set()
        self.sac_counted: dict[int, tuple[str, int, int, int]] = {}  # storage -> module, bytes, numel, storage

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
            dtype=_dtype_name(t.dtype),
            itemsize=t.element_size(),
            storage=storage,
            is_view=bool(t._is_view()),
            tid=self.tid(t),
        )

    def convert(self, obj):
        def conv(x):
            if isinstance(x, torch.Tensor):
                return self.meta(x)
            if isinstance(x, torch.dtype):
                return _dtype_name(x)
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
            return None if node is None else node.metadata.get(_META_KEY)
        return self.module_stack[-1]

    def flush_pending(self) -> None:
        """Tag the autograd nodes of recent ops' outputs with their module.

        Autograd sets ``grad_fn`` only after the op returns through every mode, and another
        mode (selective checkpointing's cache) may run ops before that: an output without a
        node yet is retried at the next few ops.
        """
        keep = []
        for t, module, age in self.pending:
            fn = t.grad_fn
            if fn is not None:
                if _META_KEY not in fn.metadata:
                    fn.metadata[_META_KEY] = module
            elif age < 4:
                keep.append((t, module, age + 1))
        self.pending = keep

    def record(self, func, args, kwargs, out) -> None:
        module = self.current_module()
        a = self.convert(args)
        k = self.convert(kwargs)
        flat_out = [x for x in _flatten(out) if isinstance(x, torch.Tensor)]
        outs = tuple(self.meta(x) for x in flat_out)
        if module is None:
            # engine-level ops (gradient accumulation, seeding): follow the producer of an input
            module = ""
            for x in _flatten(args):
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
            )
        )


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


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _flatten(x)
    else:
        yield obj


def _install_module_hooks(model: nn.Module, st: _State) -> list[Any]:
    handles = []
    for path, mod in model.named_modules():

        def pre(_m, _args, path=path):
            st.module_stack.append(path)
            if st.phase is Phase.BACKWARD:
                st.phase = Phase.RECOMPUTE
                st.module_stack.append("\0recompute-entry")

        def post(_m, _args, _out, path=path):
            if st.module_stack and st.module_stack[-1] == "\0recompute-entry":
                st.module_stack.pop()
                st.phase = Phase.BACKWARD
            if len(st.module_stack) > 1:
                st.module_stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))
    return handles


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def _saved_hooks(st: _State, param_storages: set[int], saved: dict[str, int], seen: set[int],
                 tensors: list[tuple[str, int, int, int]]):
    """saved_tensors_hooks that count each saved storage once, excluding parameters/buffers;
    ``tensors`` gets (module, bytes, elements, storage id) of each."""

    def pack(t: torch.Tensor):
        try:
            key = t.untyped_storage()._cdata
            nbytes = t.untyped_storage().nbytes()
        except Exception:
            return t
        if key in param_storages or key in seen:
            return t
        seen.add(key)
        module = st.current_module() or ""
        saved[module] = saved.get(module, 0) + nbytes
        tensors.append((module, nbytes, nbytes // max(1, t.element_size()), key))
        return t

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def capture_step(
    spec: ModelSpec,
    batch_size: int,
    seq_len: int,
    precision: PrecisionPolicy,
    optimizer: str = "adamw",
    dedupe_repeats: bool = True,
    progress: Callable[[str], None] | None = None,
    recompute: Recompute = Recompute.NONE,
    selective: SelectiveRecompute = SelectiveRecompute.ATTENTION_CORE,
) -> CaptureResult:
    """Trace one training step of ``spec`` at (batch_size, seq_len); ``selective`` says what
    recompute=selective saves (the runtime profile's)."""
    say = progress or (lambda _msg: None)
    if optimizer not in OPTIMIZERS:
        raise TraceError(f"--optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    t0 = time.perf_counter()
    dtype = getattr(torch, precision.compute_dtype)
    say("building the model on the meta device")
    with torch.device("meta"):
        model = spec.build(batch_size, seq_len)
    saved_keys = frozenset()
    if recompute is Recompute.SELECTIVE and selective is SelectiveRecompute.ATTENTION_CORE:
        # what autograd saves without recomputation
        saved_keys = capture_step(spec, batch_size, seq_len, precision, optimizer, dedupe_repeats,
                                  progress).saved_op_keys
    st = _State(RepeatTracker.empty())
    repeats = RepeatTracker.from_model(model, dedupe_repeats,
                                       block_caller(st, recompute, saved_keys, selective))
    st.repeats = repeats
    fake_mode = FakeTensorMode(allow_non_fake_inputs=False)
    handles: list[Any] = []
    saved: dict[str, int] = {}
    saved_tensors: list[tuple[str, int, int, int]] = []
    notes: list[str] = []
    with fake_mode, quiet_fake_tensor_log():
        to_fake(model, dtype)
        params_by_name = dict(model.named_parameters())
        lowp = None
        if precision.low_precision is not None:  # before tracing: its tensors are state
            lowp = LowPrecisionLinears(model, [m for g in repeats.blocks for m in g.members],
                                       precision.low_precision, precision.fp8_weight_cache)
        state = list(model.parameters()) + list(model.buffers()) + (
            lowp.state_tensors() if lowp else [])
        param_storages = {t.untyped_storage()._cdata for t in state}
        inputs = spec.inputs(model, batch_size, seq_len)
        inputs = tree_map(
            lambda x: x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x,
            inputs,
        )
        handles += _install_module_hooks(model, st)
        handles += repeats.install(model)
        try:
            with _Recorder(st), _saved_hooks(st, param_storages, saved, st.saved_storages, saved_tensors):
                say("tracing forward and loss")
                st.phase = Phase.FORWARD
                output = _call(model, inputs, spec)
                loss = spec.loss(output, inputs)
            repeats.freeze()
            _mark_step_outputs(st, (output, loss))
            _check_loss(loss, spec)
            with _Recorder(st):
                st.flush_pending()
                if lowp:
                    lowp.end_of_pass(forward=True)
                say("tracing backward")
                st.phase = Phase.BACKWARD
                loss.backward()
                if lowp:
                    lowp.end_of_pass(forward=False)
                say("tracing the optimizer step")
                st.phase = Phase.OPTIMIZER
                opt_bytes, master_bytes = optimizer_step(
                    st, params_by_name, precision, optimizer,
                    lowp.after_update if lowp else None)
        except ArchcostError:
            raise
        except SystemExit as exc:  # the model's forward (or a hook) ended the process
            raise ModelFileError(f"{spec.path.name}: the training step called sys.exit("
                                 f"{exc.code!r}); a model must not end the process: remove "
                                 "the call") from None
        except Exception as exc:
            raise _explain(exc, spec, batch_size, seq_len) from exc
        finally:
            for h in handles:
                h.remove()
    repeats.finalize(st.records)
    params = _param_infos(model)
    if repeats.groups:
        notes.append(repeats.describe())
    for module, nbytes in st.sac_saved.items():  # cached by selective checkpointing
        saved[module] = saved.get(module, 0) + nbytes
    return CaptureResult(
        records=st.records,
        params=params,
        saved=repeats.rescale_saved(saved),
        optimizer_state_bytes=opt_bytes,
        master_weight_bytes=master_bytes,
        method="fake-dispatch",
        seconds=time.perf_counter() - t0,
        repeat_groups=repeats.summary(),
        module_classes={p: type(m).__name__ for p, m in model.named_modules()},
        notes=notes,
        saved_op_keys=_saved_op_keys(st.records, st.saved_storages),
        saved_tensors=tuple(saved_tensors) + tuple(st.sac_counted.values()),
        lowp_state_bytes=lowp.state_bytes() if lowp else 0,
        lowp_params=lowp.params() if lowp else 0,
    )


def _saved_op_keys(records: list[OpRecord], saved_storages: set[int]) -> frozenset:
    """(module, op, k) of the forward ops whose fresh outputs autograd saved (k-th such op)."""
    counts: dict[tuple[str, str], int] = {}
    keys = set()
    for rec in records:
        if rec.phase is not Phase.FORWARD:
            continue
        k = counts[(rec.module, rec.op)] = counts.get((rec.module, rec.op), 0) + 1
        if any(o.storage in saved_storages and not o.is_view for o in rec.outputs):
            keys.add((rec.module, rec.op, k))
    return frozenset(keys)


def _mark_step_outputs(st: _State, outputs) -> None:
    """The model's outputs and the loss are held by the caller until the step ends."""
    tids = {st.tid(t) for t in _flatten(_tensors_of(outputs))}
    for rec in st.records:
        if any(o.tid in tids for o in rec.outputs):
            rec.extra["held_by_caller"] = True


def _tensors_of(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in _tensors_of(x)]
    if hasattr(obj, "__dict__"):
        return [v for v in vars(obj).values() if isinstance(v, torch.Tensor)]
    return []


def _call(model, inputs, spec: ModelSpec):
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs)


def _check_loss(loss, spec: ModelSpec) -> None:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        what = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TraceError(
            f"{spec.path.name}: the loss is {what}, not a scalar tensor; "
            "define loss(output, inputs) returning a scalar"
        )
    if not loss.requires_grad:
        raise TraceError(
            f"{spec.path.name}: the loss does not require grad (no trainable parameter reaches "
            "it); check requires_grad on the model's parameters or the loss function"
        )


def _param_infos(model: nn.Module) -> list[ParamInfo]:
    out = []
    for name, p in model.named_parameters():
        module = _owner(name)
        out.append(
            ParamInfo(name, module, tuple(p.shape), _dtype_name(p.dtype), p.requires_grad, 1)
        )
    for name, b in model.named_buffers():
        module = _owner(name)
        out.append(
            ParamInfo(name, module, tuple(b.shape), _dtype_name(b.dtype), False, 1, is_buffer=True)
        )
    return out


def _explain(exc: Exception, spec: ModelSpec, batch_size: int, seq_len: int) -> TraceError:
    from torch._subclasses import fake_tensor as ft

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ft.UnsupportedOperatorException):
        return TraceError(
            f"{spec.path.name}: op {exc.func} has no fake-tensor kernel, so it cannot be traced "
            "without data; replace it with a standard torch op or register a fake kernel "
            "(torch.library.register_fake)"
        )
    if isinstance(exc, (ft.DynamicOutputShapeException, ft.DataDependentOutputException)):
        return TraceError(
            f"{spec.path.name}: op {getattr(exc, 'func', '?')} has a data-dependent output, "
            "which fake tensors cannot trace; use static shapes (e.g. masks instead of nonzero)"
        )
    return TraceError(
        f"{spec.path.name}: the training step failed on example_inputs({batch_size}, {seq_len}): "
        f"{type(exc).__name__}: {first}; make example_inputs match the model's forward"
    )
