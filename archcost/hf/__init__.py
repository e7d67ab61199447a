"""Hugging Face configs as models: ``hf:path/to/config.json``, ``hf:folder`` or a bundled name.

The model is built from the config alone through ``transformers``' own class for its head
(:mod:`archcost.hf.tasks` chooses it, with its example inputs and loss), on whatever device the
caller sets (the tracer: meta), in fp32 (the tracer casts to the run's precision). No weights are
read and the hub is never asked: ``HF_HUB_OFFLINE=1`` is set before ``transformers`` is imported,
nothing calls ``from_pretrained``, and a config's ``auto_map`` (code from the hub) is ignored: the
model is the class ``transformers`` ships for its ``model_type``. A ``quantization_config`` is
ignored too (it says how stored weights are packed; the step is traced in the run's precision).

Bundled configs (``archcost/hf/configs/NAME.json``, ``hf:NAME``) hold published ``config.json``
values; README's "Hugging Face models" table cites each source.

``--set FIELD=VALUE`` overrides a config field, typed by the value the field has in the config
(the class's defaults included): a bool takes true/false, an int a whole number, a float a
number, a str the text as written, a list or dict JSON; a field that is ``None`` takes any of
these. Fields of nested configs take a dotted key (``--set text_config.num_hidden_layers=2``).
Overrides are applied to the file's values before the config class is built, so the fields it
derives (``head_dim`` from ``hidden_size``) follow them. Unknown fields are refused. A training
step keeps no KV cache: ``use_cache`` is false unless set.

A causal LM also runs ``archcost infer``: its spec carries the ``kv_cache`` and ``infer_step``
hooks of :mod:`archcost.hf.cache` (transformers' ``DynamicCache``, called as ``generate`` calls
the model, with ``logits_to_keep=1``); other heads have no KV cache and are refused.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from pathlib import Path
from typing import Any

from archcost.errors import ModelFileError, SequenceLimitError
from archcost.hf.tasks import choose_task, example_inputs, sequence_limit
from archcost.hf.unpadded import answer_as_unpadded
from archcost.loader import ModelSpec

__all__ = ["PREFIX", "bundled_names", "load_hf"]

PREFIX = "hf:"
CONFIGS = Path(__file__).resolve().parent / "configs"
_INSTALL = "pip install 'archcost[hf]'"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def _transformers():
    os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported: never download
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError as exc:
        raise ModelFileError(f"hf: models need transformers, which does not import ({exc}); "
                             f"{_INSTALL}") from None
    transformers.logging.set_verbosity_error()  # its advice on generation and caches is noise
    return transformers


def _resolve(text: str) -> tuple[Path, str]:
    """(config file, model name) of ``hf:TEXT``: a file, a folder holding config.json, or a
    bundled name."""
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        name = path.parent.name if path.stem == "config" and path.parent.name else path.stem
        return path, name or "config"
    looks_like_path = text.endswith(".json") or "/" in text or os.sep in text
    if not looks_like_path and (CONFIGS / f"{text}.json").is_file():
        return CONFIGS / f"{text}.json", text
    if looks_like_path:
        raise ModelFileError(f"hf:{text}: no such config file; pass hf:path/to/config.json, a "
                             "folder holding one, or a bundled name (archcost analyze hf:NAME)")
    near = difflib.get_close_matches(text, bundled_names(), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise ModelFileError(f"hf:{text}: no bundled config of that name and no such file; {hint}"
                         f"bundled: {', '.join(bundled_names())}")


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelFileError(f"{path.name}: not a text file; pass a config.json") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path.name}:{exc.lineno}: not valid JSON ({exc.msg}); "
                             "fix the config file") from None
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot be read ({exc.strerror})") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path.name}: holds a JSON {type(raw).__name__}, not an object of "
                             "config fields; pass a Hugging Face config.json")
    if not isinstance(raw.get("model_type"), str):
        raise ModelFileError(f"{path.name}: has no \"model_type\"; a Hugging Face config names "
                             "its family, e.g. \"model_type\": \"llama\"")
    # hub code is never run; no weights are read, so how they are quantized does not apply
    raw = {k: v for k, v in raw.items() if k not in ("auto_map", "quantization_config")}
    raw.setdefault("use_cache", False)
    return raw


def _config(transformers, raw: dict[str, Any], where: str):
    mapping = transformers.models.auto.configuration_auto.CONFIG_MAPPING
    mtype = raw["model_type"]
    if mtype not in mapping:
        near = difflib.get_close_matches(mtype, list(mapping.keys()), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ModelFileError(f"{where}: model_type {mtype!r} is unknown to transformers "
                             f"{transformers.__version__}; {hint}fix model_type or upgrade "
                             "transformers")
    fields = {k: v for k, v in raw.items() if k != "model_type"}
    try:
        return mapping[mtype](**fields)
    except Exception as exc:
        raise ModelFileError(f"{where}: {mapping[mtype].__name__}(...) raised "
                             f"{type(exc).__name__}: {_first_line(exc)}; fix the config or "
                             "the --set values") from None


def _fields(config) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if not k.startswith("_")}


def _typed(key: str, value: Any, current: Any) -> Any:
    """``value`` (as ``parse_value`` read it) in the type of the field's current value."""
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
             list: "a JSON list", dict: "a JSON object"}
    if current is None:
        return _json(value) if isinstance(value, str) else value
    from archcost.loader import NOT_SCALAR, as_scalar

    kind = type(current)
    scalar = as_scalar(kind, value)
    if scalar is not NOT_SCALAR:
        return scalar
    if kind is str and value is not None:
        return str(value).lower() if isinstance(value, bool) else str(value)
    if kind in (list, dict) and isinstance(value, str) and isinstance(_json(value), kind):
        return _json(value)
    example = {bool: "true", int: "4", float: "0.5", str: "name", list: "[2,2]",
               dict: '{"type":"linear"}'}.get(kind, "4")
    raise ModelFileError(f"--set {key}={value}: the config's {key} is {kinds.get(kind, kind)} "
                         f"(now {json.dumps(current)}); write e.g. --set {key}={example}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overridden(raw: dict[str, Any], known: dict[str, Any], overrides: dict[str, Any],
                where: str) -> dict[str, Any]:
    """The file's fields with ``overrides`` applied, each checked against the config's fields."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        fields, target = known, out
        for part in parents:
            sub = fields.get(part)
            if not isinstance(sub, dict):
                raise ModelFileError(f"--set {key}: {where} has no nested config {part!r}; "
                                     "a dotted key names a field of a sub-config such as "
                                     "text_config")
            fields = sub
            target = target.setdefault(part, {})
        if leaf not in fields:
            near = difflib.get_close_matches(leaf, list(fields), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ModelFileError(f"--set {key}: {where} has no field {leaf!r}; {hint}"
                                 "set a field of the config (see its config.json)")
        if leaf == "model_type":
            raise ModelFileError(f"--set {key}: the model family is the config file's; "
                                 "pass another config instead")
        target[leaf] = _typed(key, value, fields[leaf])
    return out


def load_hf(text: str, overrides: dict[str, Any] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of ``hf:TEXT`` with its ``--set`` overrides checked."""
    path, name = _resolve(text)
    raw = _read(path)
    transformers = _transformers()
    where = path.name
    config = _config(transformers, raw, where)
    overrides = dict(overrides or {})
    values = _overridden(raw, _fields(config), overrides, where)
    task = choose_task(config, transformers)
    if task is None:
        raise ModelFileError(f"{where}: transformers has no model class for model_type "
                             f"{config.model_type!r}; add \"architectures\" naming one")

    def build(*, seq_len: int, batch_size: int, **_fields):
        import torch

        cfg = _config(transformers, values, where)
        limit = sequence_limit(task, cfg)
        if limit is not None and seq_len > limit[1]:
            field, most = limit
            raise SequenceLimitError(f"--seq-len {seq_len}: {name} has {field} = {most}; pass "
                                     f"-s {most} or less, or --set {field}=N for more "
                                     "positions", tokens=seq_len, field=field, most=most)
        try:
            model = task.model_class._from_config(cfg, dtype=torch.float32)
        except Exception as exc:
            raise ModelFileError(f"{where}: {task.name}(config) raised {type(exc).__name__}: "
                                 f"{_first_line(exc)}; fix the config or the --set "
                                 "values") from None
        answer_as_unpadded(model)
        return model

    def inputs(batch_size: int, seq_len: int, model):
        return example_inputs(task, model.config, batch_size, seq_len)

    hooks = {}
    if task.kind == "causal-lm":  # archcost infer: transformers' own cache and call
        from archcost.hf.cache import infer_step, kv_cache

        hooks = {"kv_cache_fn": kv_cache, "infer_step_fn": infer_step}
    return ModelSpec(path, task.name, build, inputs, None, overrides, label=name,
                     workload_keys=("seq_len", "batch_size"), **hooks)


def _first_line(exc: BaseException) -> str:
    """The message's first line, with the next when it only introduces it (``...:``)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
