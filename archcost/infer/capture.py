"""Capture one inference step of a model, forward only, against a KV cache, on fake tensors.

Two steps make up generation:

- **prefill**: the ``B x I`` prompt tokens at positions ``[0, I)`` written into an empty cache,
  the logits of the last position out (the first output token);
- **decode**: ``B x 1`` new tokens at position ``L`` against a cache holding ``L`` tokens of
  context, one token out per sequence.

Each step ends with its tokens picked, greedily (the argmax of the last position's logits), as
a generation loop and a serving engine's time per token do.

The model file's ``kv_cache(model, batch_size, max_len, dtype)`` hook builds the cache and its
forward takes ``cache=`` and ``start_pos=`` (README "Inference"); ``ModelSpec.infer_step``
readies the call (an ``hf:`` model's: transformers' ``DynamicCache`` and ``generate``'s call,
:mod:`archcost.hf.cache`). The model is built under the meta device and runs under
``FakeTensorMode`` and ``torch.no_grad`` while the recorder of the training capture
(:mod:`archcost.trace.capture`) records every aten op; repeated blocks are traced once and
counted (their cache writes too). The cache is built and the call readied outside the
recording, as the example inputs are: its allocation is no part of a step; its bytes are
measured from the tensors it holds at ``max_len``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_map

from archcost.errors import ArchcostError, ConfigError, ModelFileError, SequenceLimitError
from archcost.loader import ModelSpec
from archcost.trace.assume import CaptureOptions
from archcost.trace.capture import (
    CaptureResult,
    _explain,
    _install_module_hooks,
    _param_infos,
    watched,
)
from archcost.trace.fake import quiet_fake_tensor_log, to_fake
from archcost.trace.graph import build_graph
from archcost.trace.precision import PrecisionPolicy
from archcost.trace.recompute import Recompute, block_caller
from archcost.trace.recorder import Recorder
from archcost.trace.records import Phase
from archcost.trace.repeats import RepeatTracker
from archcost.trace.values import assumptions
from archcost.trace.watchdog import Stalled

__all__ = ["InferStep", "InferCapture", "capture_inference", "logits_of"]


@dataclass(frozen=True)
class InferStep:
    """One forward of ``new_tokens`` per sequence after ``context`` tokens already cached."""

    kind: str  # "prefill" | "decode"
    batch: int
    new_tokens: int
    context: int = 0

    @property
    def max_len(self) -> int:
        return self.context + self.new_tokens

    @classmethod
    def prefill(cls, batch: int, input_len: int) -> InferStep:
        return cls("prefill", batch, input_len, 0)

    @classmethod
    def decode(cls, batch: int, context: int) -> InferStep:
        return cls("decode", batch, 1, context)


@dataclass
class InferCapture:
    """A traced inference step: its op graph, the capture, and the cache it ran against."""

    step: InferStep
    capture: CaptureResult
    graph: Any  # networkx.DiGraph
    kv_cache_bytes: int  # every layer's K and V at max_len, as allocated
    kv_cache_dtype: str
    weight_bytes: int  # parameters and buffers as held, converted weights as packed
    packed_bytes: int = 0  # of weight_bytes: the converted (quantized) linears' state
    notes: list[str] = field(default_factory=list)
    # the distinct sliding windows of the cache's layers (a transformers Cache's sliding
    # layers): each such layer holds and attends to at most its window; () when none has one
    kv_windows: tuple[int, ...] = ()
    # the fewest heads of a (batch, heads, tokens, width) tensor the cache holds: the KV heads
    # as cached (one for a latent cache); 0 when it holds none of that shape
    kv_cache_heads: int = 0
    # the layers the cache holds, one per attention layer (a transformers Cache's layers, a
    # model file's list): every decoder layer, the ones outside the main repeated stack too
    # (DeepSeek-V3's dense layers); 0 when the cache's form does not say
    kv_layers: int = 0


def _held_tensors(obj, seen: set[int]) -> list[torch.Tensor]:
    """The tensors ``obj`` holds through lists, tuples, dicts and attributes, at any depth (a
    transformers ``Cache`` holds layers, each its keys and values)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if id(obj) in seen or isinstance(obj, torch.nn.Module):
        return []
    seen.add(id(obj))  # the objects walked stay alive in the cache: their ids are unique
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return []
    return [t for x in items for t in _held_tensors(x, seen)]


def _cache_windows(cache) -> tuple[int, ...]:
    """The distinct windows of a transformers ``Cache``'s sliding layers (``is_sliding``,
    ``sliding_window``); () for caches without layers (a model file's list of tensors)."""
    layers = getattr(cache, "layers", ())
    return tuple(sorted({int(layer.sliding_window) for layer in layers
                         if getattr(layer, "is_sliding", False)}))


def _cache_layers(cache) -> int:
    """Layers a cache holds: a transformers ``Cache``'s layers, or the entries of a list or
    tuple of per-layer caches; 0 for other forms."""
    layers = getattr(cache, "layers", None)
    if isinstance(layers, (list, tuple)):
        return len(layers)
    return len(cache) if isinstance(cache, (list, tuple)) else 0


def _cache_heads(cache, batch: int) -> int:
    """The fewest heads (dim 1) of the cache's 4-D tensors of ``batch`` sequences."""
    heads = [int(t.shape[1]) for t in _held_tensors(cache, set())
             if t.dim() == 4 and int(t.shape[0]) == batch and int(t.shape[1]) > 0]
    return min(heads) if heads else 0


def _cache_bytes(cache) -> int:
    """Bytes of the distinct storages the cache object holds."""
    seen: dict[int, int] = {}
    for t in _held_tensors(cache, set()):
        if t.dim() == 0:  # a scalar the cache keeps beside K/V (a sliding layer's window)
            continue
        try:
            s = t.untyped_storage()
            seen.setdefault(s._cdata, s.nbytes())
        except Exception:  # a tensor without storage: count its elements
            seen.setdefault(id(t), t.numel() * t.element_size())
    return sum(seen.values())


def capture_inference(spec: ModelSpec, step: InferStep, policy: PrecisionPolicy,
                      kv_dtype: str | None = None, quantize=None,
                      options: CaptureOptions | None = None, dedupe_repeats: bool = True,
                      debug: bool = False, progress=None, build_len: int | None = None
                      ) -> InferCapture:
    """Trace ``step`` of ``spec`` in ``policy``'s compute dtype; the cache in ``kv_dtype``
    (a torch dtype name; None: the compute dtype); ``quantize(model, members)`` (optional)
    converts the layers' linears (``RepeatTracker.layers``) before the step and returns an object whose
    ``state_bytes()`` are the converted weights as held; ``build_len``: the sequence length
    the model is built for (default: the step's end), the generation's longest."""
    options = options or CaptureOptions()
    if step.batch < 1 or step.new_tokens < 1 or step.context < 0:
        raise ArchcostError(f"inference step {step}: batch and tokens must be >= 1")
    t0 = time.perf_counter()
    return watched(spec, options, debug, progress, lambda st, say: _capture(
        spec, step, policy, kv_dtype, quantize, dedupe_repeats, st, say, t0,
        max(build_len or 0, step.max_len)))


def _capture(spec, step: InferStep, policy, kv_dtype, quantize, dedupe, st, say, t0,
             build_len: int) -> InferCapture:
    dtype = getattr(torch, policy.compute_dtype)
    cache_dtype = getattr(torch, kv_dtype) if kv_dtype else dtype
    say("building the model on the meta device")
    try:
        with torch.device("meta"):
            model = spec.build(step.batch, build_len)
    except SequenceLimitError as exc:  # worded for training's -s
        raise ConfigError(f"{spec.name}: {exc.tokens} tokens (input + output) pass the model's "
                          f"{exc.field} = {exc.most}; shorten --input-len or --output-len, or "
                          f"--set {exc.field}=N for more positions") from None
    limit = getattr(model, "max_seq_len", None)
    if isinstance(limit, int) and build_len > limit:
        raise ConfigError(f"{spec.path.name}: {build_len} tokens (input + output) pass the "
                          f"model's limit of {limit} (its max_seq_len); shorten --input-len or "
                          "--output-len, or build the model longer with --set")
    repeats = RepeatTracker.from_model(model, dedupe, block_caller(st, Recompute.NONE))
    st.repeats = repeats
    notes: list[str] = []
    handles: list[Any] = []
    with FakeTensorMode(allow_non_fake_inputs=False), quiet_fake_tensor_log():
        to_fake(model, dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        qstate = None
        if quantize is not None:
            qstate = quantize(model, list(repeats.layers))
            _check_converted(qstate)
        with Recorder(st, record=False):  # built before the step, as the example inputs
            say("building the KV cache and the inputs")
            cache = spec.kv_cache(model, step.batch, step.max_len, cache_dtype)
            inputs = spec.inputs(model, step.batch, step.new_tokens)
            inputs = tree_map(
                lambda x: x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point()
                else x, inputs)
            kv_bytes = _cache_bytes(cache)  # at max_len, before the step readies the cache
            windows = _cache_windows(cache)
            cache_heads = _cache_heads(cache, step.batch)
            call = spec.infer_step(model, inputs, cache, step.context)
        handles += _install_module_hooks(model, st)
        handles += repeats.install(model)
        try:
            with Recorder(st), torch.no_grad():
                say(f"tracing {step.kind}")
                st.phase = Phase.FORWARD
                out = call()
                _greedy_pick(out)
                st.flush_pending()
            repeats.freeze()
        except (ArchcostError, Stalled):
            raise
        except TypeError as exc:
            if "cache" in str(exc) or "start_pos" in str(exc):
                raise ModelFileError(
                    f"{spec.path.name}: the model's forward does not take cache= and "
                    f"start_pos= ({exc}); see README 'Inference' for the kv_cache convention"
                ) from None
            raise _explain(exc, spec, step.batch, step.new_tokens, _words(step)) from exc
        except SystemExit as exc:
            raise ModelFileError(f"{spec.path.name}: the {step.kind} step called sys.exit("
                                 f"{exc.code!r}); a model must not end the process: remove "
                                 "the call") from None
        except Exception as exc:
            raise _explain(exc, spec, step.batch, step.new_tokens, _words(step)) from exc
        finally:
            for h in handles:
                h.remove()
    _check_logits(out, spec, step)
    repeats.finalize(st.records)
    params = _param_infos(model)
    if repeats.groups:
        notes.append(repeats.describe())
    from archcost.trace.precision import ITEMSIZE

    packed = qstate.state_bytes() if qstate is not None else 0
    weights = sum(p.numel * ITEMSIZE.get(p.dtype, 4) for p in params) + packed
    cap = CaptureResult(
        records=st.records, params=params, saved={}, optimizer_state_bytes=0,
        master_weight_bytes=0, method="fake-dispatch", seconds=time.perf_counter() - t0,
        repeat_groups=repeats.summary(),
        module_classes={p: type(m).__name__ for p, m in model.named_modules()}, notes=notes,
        lowp_state_bytes=qstate.state_bytes() if qstate is not None else 0,
        lowp_params=qstate.params() if qstate is not None else 0,
        assumptions=assumptions(st.values, repeats.count_for),
        module_calls=repeats.counted_calls(st.module_calls))
    attrs = {"model": spec.name, "batch_size": step.batch, "seq_len": step.new_tokens,
             "context": step.context, "step": step.kind, "precision": policy.precision.value,
             "capture_method": cap.method, "module_classes": dict(cap.module_classes)}
    return InferCapture(step=step, capture=cap, graph=build_graph(cap.records, attrs),
                        kv_cache_bytes=kv_bytes, kv_cache_dtype=str(cache_dtype).removeprefix(
                            "torch."),
                        weight_bytes=weights, packed_bytes=packed, kv_windows=windows,
                        kv_cache_heads=cache_heads, kv_layers=_cache_layers(cache),
                        notes=notes + (qstate.notes() if qstate is not None else []))


def _words(step: InferStep) -> str:
    return (f"inference {step.kind} step (batch {step.batch}, {step.new_tokens} new tokens "
            f"after {step.context})")


def _check_converted(qstate) -> None:
    """One line when the conversion asked for converts none of the blocks' linears (it would
    price the model unconverted under the conversion's name)."""
    if qstate.linears or qstate.experts:
        return
    what = qstate.quant.describe()
    if not qstate.kept:
        raise ConfigError(f"{what}: the model's layers hold no linear layer to convert; "
                          "drop --weights/--sparsity/--dtype fp8 for this model")
    path, why = next(iter(qstate.kept.items()))
    fix = ("use a --group-size that divides it, or -1 (one scale per channel)"
           if "group size" in why else "drop the conversion for this model")
    raise ConfigError(f"{what}: none of the {len(qstate.kept)} linears in the layers "
                      f"can take it ({path}: {why}); {fix}")


def logits_of(out) -> torch.Tensor | None:
    """The logits a forward returned: the tensor, an output's ``logits``, or a tuple's first."""
    t = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if t is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        t = out[0]
    return t if isinstance(t, torch.Tensor) else None


def _greedy_pick(out) -> None:
    """The step's token out of each sequence, as a greedy generation picks it: the argmax of
    the last position's logits (``archcost validate --infer`` times its steps with it, and a
    serving engine's time per token holds its sampling)."""
    t = logits_of(out)
    if t is not None and t.dim() >= 2:
        (t[:, -1] if t.dim() >= 3 else t).argmax(-1)


def _check_logits(out, spec: ModelSpec, step: InferStep) -> None:
    t = logits_of(out)
    if t is None or t.dim() < 2 or t.shape[0] != step.batch:
        what = tuple(t.shape) if isinstance(t, torch.Tensor) else type(out).__name__
        raise ModelFileError(f"{spec.path.name}: the {step.kind} forward returned {what}, not "
                             f"logits of {step.batch} sequences; with cache= return the last "
                             "position's logits (README 'Inference')")
