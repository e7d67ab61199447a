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
from torch.utils._pytree import tree_map

from archcost.errors import ArchcostError, ModelFileError, TraceError
from archcost.loader import ModelSpec
from archcost.runtime import SelectiveRecompute
from archcost.trace.assume import CaptureOptions
from archcost.trace.fake import quiet_fake_tensor_log, to_fake
from archcost.trace.fallbacks import OpRefused
from archcost.trace.lowp_linear import LowPrecisionLinears
from archcost.trace.optimizer import OPTIMIZERS, optimizer_step
from archcost.trace.precision import PrecisionPolicy
from archcost.trace.recompute import Recompute, block_caller
from archcost.trace.recorder import CaptureState, Recorder, dtype_name, flatten
from archcost.trace.records import OpRecord, Phase
from archcost.trace.repeats import RepeatTracker
from archcost.trace.shared_grads import SharedGrads
from archcost.trace.values import Values, assumptions
from archcost.trace.watchdog import Stalled, Watchdog

__all__ = ["CaptureResult", "ParamInfo", "capture_step", "OPTIMIZERS", "Recompute"]

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
    # what the capture assumed where values were unknown (routing, bounds, fallbacks)
    assumptions: dict[str, Any] = field(default_factory=dict)
    # forward nn.Module calls (path, index of the first record after the call began, count):
    # what eager Python pays per call beyond its ops (``RepeatTracker.counted_calls``)
    module_calls: tuple[tuple[str, int, int], ...] = ()


def _install_module_hooks(model: nn.Module, st: CaptureState) -> list[Any]:
    handles = []
    for path, mod in model.named_modules():

        def pre(_m, _args, path=path):
            st.module_stack.append(path)
            if st.phase is Phase.FORWARD:
                st.module_calls.append((path, len(st.records)))
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


def _saved_hooks(st: CaptureState, param_storages: set[int], saved: dict[str, int], seen: set[int],
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
    options: CaptureOptions | None = None,
    debug: bool = False,
    selective: SelectiveRecompute = SelectiveRecompute.ATTENTION_CORE,
) -> CaptureResult:
    """Trace one training step of ``spec`` at (batch_size, seq_len); ``selective`` says what
    recompute=selective saves (the runtime profile's)."""
    options = options or CaptureOptions()
    if optimizer not in OPTIMIZERS:
        raise TraceError(f"--optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    t0 = time.perf_counter()
    saved_keys = frozenset()
    if recompute is Recompute.SELECTIVE and selective in (SelectiveRecompute.ATTENTION_CORE,
                                                          SelectiveRecompute.MLA_UP_PROJ):
        # what autograd saves without recomputation
        saved_keys = capture_step(spec, batch_size, seq_len, precision, optimizer, dedupe_repeats,
                                  progress, options=options, debug=debug).saved_op_keys
    return watched(spec, options, debug, progress, lambda st, say: _capture(
        spec, batch_size, seq_len, precision, optimizer, dedupe_repeats, recompute, saved_keys,
        selective, st, say, t0))


def watched(spec: ModelSpec, options: CaptureOptions, debug: bool,
            progress: Callable[[str], None] | None, body: Callable[[CaptureState, Callable], Any]):
    """``body(state, say)`` on a fresh capture state, under the watchdog and a fixed seed (what
    inputs and assumed values draw is the same every run); a stall or a refused op ends as one
    TraceError. Every capture (a training step, an inference step) runs through it."""
    st = CaptureState(RepeatTracker.empty())
    st.values = Values(options, lambda: st.current_module() or "")

    def say(msg: str) -> None:
        st.progress(msg)
        if progress:
            progress(msg)

    dog = Watchdog(options.trace_timeout_s, lambda: st.progress_at, st.where,
                   lambda where, blocked: _stalled(spec, options, where, blocked), debug)
    st.check = dog.check
    try:
        with dog, torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return body(st, say)
    except Stalled:
        raise TraceError(dog.fired or _stalled(spec, options, st.where(), False)) from None
    except OpRefused as exc:
        raise TraceError(f"{spec.path.name}: {exc.text()}") from exc


def _stalled(spec: ModelSpec, options: CaptureOptions, where: str, blocked: bool) -> str:
    limit = f"{options.trace_timeout_s:g} s"
    if blocked:
        return (f"{spec.path.name}: the capture is blocked (no progress for {limit}; {where}): "
                "a deadlock in native code (torch, the capture or the model's own) or a loop "
                "that runs no torch op; if the model runs for real, it is archcost's gap: rerun "
                "with --debug (every thread's stack) and report it")
    return (f"{spec.path.name}: the capture made no progress for {limit} ({where}): the model's "
            "code loops without end (a loop on values computed from the weights, which a trace "
            "reads as stated in README 'How it counts'?); if it is only slow, raise "
            "--trace-timeout")


def _capture(spec, batch_size, seq_len, precision, optimizer, dedupe_repeats, recompute,
             saved_keys, selective, st: CaptureState, say, t0) -> CaptureResult:
    dtype = getattr(torch, precision.compute_dtype)
    say("building the model on the meta device")
    with torch.device("meta"):
        model = spec.build(batch_size, seq_len)
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
        say("building the example inputs")
        with Recorder(st, record=False):  # their values are known: kept where small
            inputs = spec.inputs(model, batch_size, seq_len)
            inputs = tree_map(
                lambda x: x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point()
                else x, inputs)
        handles += _install_module_hooks(model, st)
        handles += repeats.install(model)
        try:
            with Recorder(st), _saved_hooks(st, param_storages, saved, st.saved_storages,
                                            saved_tensors):
                say("tracing forward and loss")
                st.phase = Phase.FORWARD
                output = _call(model, inputs, spec)
                loss = spec.loss(output, inputs)
            repeats.freeze()
            shared = SharedGrads(st)
            shared.install()
            saved_tensors[:] = _shared_counted_once(saved_tensors, st, repeats)
            saved.clear()
            for module, nbytes, _, _ in saved_tensors:
                saved[module] = saved.get(module, 0) + nbytes
            _mark_step_outputs(st, (output, loss))
            _check_loss(loss, spec)
            with Recorder(st):
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
                st.values.active = False  # nothing in an optimizer step depends on values
                opt_bytes, master_bytes = optimizer_step(
                    st, params_by_name, precision, optimizer,
                    lowp.after_update if lowp else None)
        except (ArchcostError, Stalled):
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
    shared.remove()
    repeats.finalize(st.records)
    shared.recount()
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
        module_calls=repeats.counted_calls(st.module_calls),
        saved_tensors=tuple(saved_tensors) + tuple(st.sac_counted.values()),
        lowp_state_bytes=lowp.state_bytes() if lowp else 0,
        lowp_params=lowp.params() if lowp else 0,
        assumptions=assumptions(st.values, repeats.count_for),
    )


def _shared_counted_once(saved_tensors, st: CaptureState, repeats: RepeatTracker):
    """Saved storages re-owned where every instance of a repeated block reads the same one
    (``RepeatTracker.owner_of_saved``), so the repeat count multiplies only what each has."""
    saved_by: dict[str, set[int]] = {}
    for module, _, _, storage in saved_tensors:
        saved_by.setdefault(repeats.group_of(module), set()).add(storage)
    return [(repeats.owner_of_saved(module, storage, st.storage_producer.get(storage), saved_by),
             nbytes, numel, storage) for module, nbytes, numel, storage in saved_tensors]


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


def _mark_step_outputs(st: CaptureState, outputs) -> None:
    """The model's outputs and the loss are held by the caller until the step ends."""
    tids = {st.tid(t) for t in flatten(_tensors_of(outputs))}
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
            ParamInfo(name, module, tuple(p.shape), dtype_name(p.dtype), p.requires_grad, 1)
        )
    for name, b in model.named_buffers():
        module = _owner(name)
        out.append(
            ParamInfo(name, module, tuple(b.shape), dtype_name(b.dtype), False, 1, is_buffer=True)
        )
    return out


def _explain(exc: Exception, spec: ModelSpec, batch_size: int, seq_len: int,
             step: str | None = None) -> TraceError:
    """An exception of the model's own code (an op that refuses its arguments is an
    ``OpRefused``, with the op named); ``step``: an inference step's words (default: the
    training step on example_inputs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= 240 else text[:237] + "..."
    if step is not None:
        return TraceError(f"{spec.path.name}: the {step} failed: {type(exc).__name__}: {text}; "
                          "check the model's settings (--set) and its inference hooks")
    return TraceError(
        f"{spec.path.name}: the training step failed on example_inputs({batch_size}, {seq_len}): "
        f"{type(exc).__name__}: {text}; make example_inputs match the model's forward"
    )
