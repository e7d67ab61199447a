"""Load a model file: the model-file convention and ``--set key=value`` overrides.

A model file is ordinary Python (running it runs its code, as pytest does with test files) that
defines:

- ``build_model(**config) -> torch.nn.Module`` (or another builder named with ``file.py:name``);
- ``example_inputs(batch_size, seq_len)`` returning a tuple (positional) or dict (keyword) of
  tensors; it may also name ``model`` and any builder key, which are then passed by name;
- optionally ``loss(output, inputs) -> Tensor``; without it the loss is ``output.loss`` when the
  output has one, else ``output.float().mean()`` (or the sum over the tensors of a tuple);
- optionally, for ``archcost validate`` of tensor- and pipeline-parallel plans,
  ``tp_plan(model, sequence_parallel=False)`` returning the ``parallelize_module`` plan (module
  name -> ``ParallelStyle``) and ``pipeline_stage(model, layers, first, last)`` returning the
  ``nn.Module`` one pipeline stage runs (see ``models/llama.py``);
- optionally, for inference, ``kv_cache(model, batch_size, max_len, dtype=None)`` returning an
  empty KV cache: per layer, in layer order, a (K, V) tuple of zero tensors shaped
  ``(batch_size, kv_heads, max_len, head_dim)`` in ``dtype`` (None: the parameters' dtype) on
  the parameters' device. The model's ``forward(idx, cache=None, start_pos=0)`` then takes the
  cache: the T new tokens sit at positions ``[start_pos, start_pos + T)``, each attention writes
  its K, V there (in the cache's dtype) and attends causally over ``[0, start_pos + T)``, and
  only the last position's logits ``(B, 1, vocab)`` are returned. Without ``cache`` the forward
  is the training one (see ``models/llama.py``). ``hf:`` causal LMs get both from
  :mod:`archcost.hf.cache` instead: transformers' own ``DynamicCache`` and the call
  ``generate`` makes (``ModelSpec.infer_step``).

A builder that names ``seq_len`` (or ``batch_size``) receives the requested size unless the user
set it. Nothing here allocates a model: the tracer calls :meth:`ModelSpec.build` under the meta
device.

``--set`` values are typed by the builder's signature: a parameter annotated (or defaulting to)
``bool`` takes ``true``/``false`` only, ``int`` a whole number, ``float`` a number, ``str`` the
text as written; ``None`` only where the annotation or the default allows it. What values a
builder accepts beyond their type (``hidden >= 1``, ``heads`` dividing ``hidden``) only the
builder knows: it raises, and the error names the model file, the builder and its arguments.
A model file's code never ends the process: ``sys.exit`` in it is a model-file error.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archcost.errors import ArchcostError, ModelFileError

__all__ = ["ModelSpec", "load_model_file", "model_file", "parse_overrides", "parse_value"]


def parse_value(text: str) -> Any:
    """Type a ``--set`` value: int, float, bool, None, else string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text.replace("_", "")) if conv is int else conv(text)
        except ValueError:
            pass
    return text


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["layers=4", "hidden=64"]`` -> ``{"layers": 4, "hidden": 64}``; a key may be dotted
    (``text_config.hidden_size``: a nested field of an ``hf:`` config)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(part.isidentifier() for part in key.split(".")):
            raise ModelFileError(f"--set {item!r} is not KEY=VALUE; write it like --set layers=4")
        out[key] = parse_value(value)
    return out


@dataclass(frozen=True)
class ModelSpec:
    """A loaded model file: how to build the model, its inputs and its loss."""

    path: Path
    builder_name: str
    builder: Callable[..., Any]
    inputs_fn: Callable[..., Any]
    loss_fn: Callable[[Any, Any], Any] | None
    config: dict[str, Any] = field(default_factory=dict)
    tp_plan_fn: Callable[..., Any] | None = None  # optional tp_plan(model, sequence_parallel)
    pipeline_stage_fn: Callable[..., Any] | None = None  # optional pipeline_stage(model, ...)
    kv_cache_fn: Callable[..., Any] | None = None  # optional kv_cache(model, batch_size, ...)
    infer_step_fn: Callable[..., Any] | None = None  # hf: specs' infer_step (archcost.hf.cache)
    label: str | None = None  # the model's name when the file's stem is not (hf: configs)
    # builder keys that size the workload, not the model (an hf: builder takes seq_len and
    # batch_size only to check the model's position limit): left out of model_config
    workload_keys: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.label or self.path.stem

    def builder_config(self, batch_size: int, seq_len: int) -> dict[str, Any]:
        """The keyword arguments the builder gets: user overrides plus requested sizes."""
        params = inspect.signature(self.builder).parameters
        cfg = dict(self.config)
        for key, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if key in params and key not in cfg:
                cfg[key] = value
        return cfg

    def model_config(self, batch_size: int, seq_len: int) -> dict[str, Any]:
        """The builder arguments that make the model, as documents record it (``model.config``,
        what ``archcost diff`` compares): :meth:`builder_config` less the workload keys."""
        return {k: v for k, v in self.builder_config(batch_size, seq_len).items()
                if k not in self.workload_keys}

    def build(self, batch_size: int, seq_len: int):
        cfg = self.builder_config(batch_size, seq_len)
        try:
            model = self.builder(**cfg)
        except SystemExit as exc:
            raise _exited(self.path, f"{self.builder_name}()", exc) from None
        except ArchcostError:  # already names the problem and the fix
            raise
        except Exception as exc:  # the user's code: report it, don't crash
            raise ModelFileError(
                f"{self.path.name}: {self.builder_name}({_fmt(cfg)}) raised "
                f"{type(exc).__name__}: {_first_line(exc)}; fix the model file or the --set values"
            ) from exc
        if not _is_module(model):
            raise ModelFileError(
                f"{self.path.name}: {self.builder_name}() returned {type(model).__name__}, "
                "not a torch.nn.Module; return the model instance"
            )
        return model

    def inputs(self, model, batch_size: int, seq_len: int):
        params = inspect.signature(self.inputs_fn).parameters
        kwargs: dict[str, Any] = {}
        if "model" in params:
            kwargs["model"] = model
        cfg = self.builder_config(batch_size, seq_len)
        for key, value in cfg.items():
            if key in params and key not in ("batch_size", "seq_len", "model"):
                kwargs[key] = value
        try:
            inputs = self.inputs_fn(batch_size, seq_len, **kwargs)
        except SystemExit as exc:
            raise _exited(self.path, "example_inputs()", exc) from None
        except ArchcostError:
            raise
        except Exception as exc:
            raise ModelFileError(
                f"{self.path.name}: example_inputs({batch_size}, {seq_len}) raised "
                f"{type(exc).__name__}: {_first_line(exc)}; fix example_inputs or the sizes"
            ) from exc
        if not isinstance(inputs, (tuple, list, dict)):
            inputs = (inputs,)
        return inputs

    def kv_cache(self, model, batch_size: int, max_len: int, dtype=None):
        """The model file's empty KV cache for ``batch_size`` sequences of up to ``max_len``
        tokens (a list of one (K, V) tuple per layer)."""
        if self.kv_cache_fn is None and self.path.suffix == ".json":  # an hf: config
            raise ModelFileError(
                f"{self.name} is a {self.builder_name}, which keeps no KV cache; archcost "
                "infer runs causal language models (hf: configs whose head is ...ForCausalLM)"
            )
        if self.kv_cache_fn is None:
            raise ModelFileError(
                f"{self.path.name} defines no kv_cache(); add `def kv_cache(model, batch_size, "
                "max_len, dtype=None)` returning one (K, V) tuple per layer (see models/llama.py)"
            )
        try:
            return self.kv_cache_fn(model, batch_size, max_len, dtype)
        except SystemExit as exc:
            raise _exited(self.path, "kv_cache()", exc) from None
        except ArchcostError:
            raise
        except Exception as exc:
            raise ModelFileError(
                f"{self.path.name}: kv_cache(model, {batch_size}, {max_len}) raised "
                f"{type(exc).__name__}: {_first_line(exc)}; fix kv_cache or the sizes"
            ) from exc

    def infer_step(self, model, inputs, cache, start_pos: int):
        """The call of one cached inference step, readied before it runs: by default the
        convention above, ``model(*inputs, cache=cache, start_pos=start_pos)``; an ``hf:`` spec
        calls transformers' own signature (:mod:`archcost.hf.cache`)."""
        if self.infer_step_fn is not None:
            try:
                return self.infer_step_fn(model, inputs, cache, start_pos)
            except ArchcostError:
                raise
            except Exception as exc:
                raise ModelFileError(
                    f"{self.path.name}: readying the step at position {start_pos} raised "
                    f"{type(exc).__name__}: {_first_line(exc)}; fix the cache or the sizes"
                ) from exc
        if isinstance(inputs, dict):
            return lambda: model(**inputs, cache=cache, start_pos=start_pos)
        return lambda: model(*inputs, cache=cache, start_pos=start_pos)

    def loss(self, output, inputs):
        if self.loss_fn is not None:
            try:
                return self.loss_fn(output, inputs)
            except SystemExit as exc:
                raise _exited(self.path, "loss()", exc) from None
        return default_loss(output)


def default_loss(output):
    """``output.loss`` if present, else a scalar mean of the (first) tensor output."""
    import torch

    if hasattr(output, "loss") and output.loss is not None:
        return output.loss
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        tensors = [o for o in output if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if not tensors:
            raise ModelFileError("the model output holds no floating-point tensor; define loss()")
        return sum(t.float().mean() for t in tensors)
    if isinstance(output, torch.Tensor):
        return output.float().mean()
    raise ModelFileError(
        f"cannot make a loss from a {type(output).__name__} output; define loss(output, inputs)"
    )


def _split_target(target: str) -> tuple[str, str]:
    """(path, builder name or '') of ``path/to/model.py[:builder]``."""
    path_text, _, builder_name = target.partition(":") if target.count(":") == 1 else (target, "", "")
    return path_text, builder_name


def model_file(target: str) -> Path:
    """The file a model argument reads: ``path/to/model.py[:builder]``'s Python file, or
    ``hf:CONFIG``'s config.json (a folder's); a bundled ``hf:`` name names no file here."""
    if target.startswith("hf:"):
        path = Path(target[3:]).expanduser()
        return path / "config.json" if path.is_dir() else path
    return Path(_split_target(target)[0]).expanduser()


def load_model_file(target: str, overrides: dict[str, Any] | None = None) -> ModelSpec:
    """Import ``path/to/model.py[:builder]`` and check the convention and the overrides;
    ``hf:CONFIG`` builds a Hugging Face model from its config instead (:mod:`archcost.hf`)."""
    if target.startswith("hf:"):
        from archcost.hf import load_hf

        return load_hf(target[3:], overrides)
    path_text, builder_name = _split_target(target)
    builder_name = builder_name or "build_model"
    path = Path(path_text)
    if not path.is_file():
        raise ModelFileError(f"model file {path_text!r} not found; pass the path to a .py file")
    module = _import(path)
    builder = getattr(module, builder_name, None)
    if not callable(builder):
        raise ModelFileError(
            f"{path.name} defines no function {builder_name}(); "
            "add `def build_model(**config) -> torch.nn.Module`"
        )
    inputs_fn = getattr(module, "example_inputs", None)
    if not callable(inputs_fn):
        raise ModelFileError(
            f"{path.name} defines no example_inputs(); "
            "add `def example_inputs(batch_size, seq_len)` returning a tuple or dict of tensors"
        )
    loss_fn = getattr(module, "loss", None)
    config = dict(overrides or {})
    _check_keys(path, builder_name, builder, config)
    return ModelSpec(path, builder_name, builder, inputs_fn, loss_fn if callable(loss_fn) else None,
                     config, tp_plan_fn=_optional(module, "tp_plan"),
                     pipeline_stage_fn=_optional(module, "pipeline_stage"),
                     kv_cache_fn=_optional(module, "kv_cache"))


def _optional(module, name: str) -> Callable[..., Any] | None:
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def _check_keys(path: Path, name: str, builder, config: dict[str, Any]) -> None:
    """Refuse unknown keys and values of the wrong type; type values by the signature."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in config:
        if key not in known:
            import difflib

            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ModelFileError(
                f"--set {key}: {path.name}:{name}() has no parameter {key!r}; {hint}"
                f"known keys: {', '.join(known) or '(none)'}"
            )
    hints = _annotations(builder)
    for key, value in list(config.items()):
        param = params[key]
        kinds = _kinds(hints.get(key, param.annotation), param.default)
        if kinds is not None:
            config[key] = _typed(f"--set {key}={_show(value)}: {path.name}:{name}()", key, value,
                                 kinds)


_NAMES = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None)}


def _annotations(fn) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # names the annotations use may not resolve: read them as text
        return {}


def _kinds(annotation, default) -> tuple | None:
    """The types a parameter takes (bool, int, float, str, NoneType, or Literal values as
    ("literal", values)); None when the signature does not say."""
    if isinstance(annotation, str):  # unresolved: "int", "int | None", "Optional[int]"
        text = annotation.replace("Optional[", "").replace("]", "").replace(" ", "")
        parts = [_NAMES.get(p) for p in text.split("|")]
        kinds = tuple(parts) if all(parts) else None
        if kinds and "Optional[" in annotation:
            kinds += (type(None),)
        return kinds
    if annotation is not inspect.Parameter.empty:
        origin = typing.get_origin(annotation)
        if origin is typing.Literal:
            return (("literal", typing.get_args(annotation)),)
        args = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else \
            (annotation,)
        if all(a in (bool, int, float, str, type(None)) for a in args):
            return tuple(args)
        return None
    if default is not inspect.Parameter.empty and type(default) in (bool, int, float, str):
        return (type(default),)
    return None


def _show(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else \
        str(value)


NOT_SCALAR = object()  # what as_scalar returns for a value that is not of the kind


def as_scalar(kind: type, value: Any) -> Any:
    """``value`` (as ``parse_value`` read it) as a ``kind`` of bool, int or float (an int is a
    float, a bool is neither number); ``NOT_SCALAR`` where it is not one."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return NOT_SCALAR


def _typed(where: str, key: str, value: Any, kinds: tuple) -> Any:
    """``value`` as one of ``kinds``, or a ModelFileError saying what the parameter takes."""
    for kind in kinds:
        if isinstance(kind, tuple):  # Literal
            if value in kind[1] or _show(value) in kind[1]:
                return value if value in kind[1] else _show(value)
            continue
        if kind is type(None) and value is None:
            return None
        scalar = as_scalar(kind, value)
        if scalar is not NOT_SCALAR:
            return scalar
    if str in kinds and value is not None:
        return _show(value)  # the text as written: preset=70 is "70"
    names = []
    for kind in kinds:
        if isinstance(kind, tuple):
            names.append("one of " + ", ".join(repr(v) for v in kind[1]))
        else:
            names.append({bool: "true or false", int: "a whole number", float: "a number",
                          str: "text", type(None): "none"}[kind])
    raise ModelFileError(f"{where} takes {key} as {' or '.join(names)}; "
                         f"write e.g. --set {key}={_example(kinds)}")


def _example(kinds: tuple) -> str:
    kind = next(k for k in kinds if k is not type(None))
    if isinstance(kind, tuple):
        return str(kind[1][0])
    return {bool: "true", int: "4", float: "0.5", str: "name"}[kind]


def _import(path: Path):
    mod_name = f"archcost_model_{path.stem}_{abs(hash(path.resolve())) % 10**8}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path} cannot be imported as Python; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise ModelFileError(
            f"{path.name}:{exc.lineno}: syntax error: {exc.msg}; fix the model file"
        ) from exc
    except SystemExit as exc:
        sys.modules.pop(mod_name, None)
        raise _exited(path, "importing it", exc) from None
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise ModelFileError(
            f"{path.name}: importing it raised {type(exc).__name__}: {_first_line(exc)}; "
            "fix the model file"
        ) from exc
    return module


def _exited(path: Path, where: str, exc: SystemExit) -> ModelFileError:
    return ModelFileError(f"{path.name}: {where} called sys.exit({exc.code!r}); a model file "
                          "defines functions and must not end the process: remove the call")


def _is_module(obj) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fmt(cfg: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in cfg.items())
