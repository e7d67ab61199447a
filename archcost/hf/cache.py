"""The KV cache of a Hugging Face causal LM, for ``archcost infer``: transformers' own cache.

Two hooks a causal-LM ``hf:`` spec carries (:func:`archcost.hf.load_hf`):

- :func:`kv_cache` ``(model, batch_size, max_len, dtype)``: the ``DynamicCache`` that
  ``generate`` builds by default (``DynamicCache(config=model.config)``), each layer
  ``update``-d once with ``max_len`` tokens of zeros: the cache a generation of ``max_len``
  tokens ends with, held as that class holds it: a full-attention layer all ``max_len`` tokens, a
  sliding-window layer (Mistral v0.1, Gemma 2/3, gpt-oss: ``DynamicSlidingWindowLayer``) the
  last ``window - 1`` (each step attends to those and its own token). Layers of another kind
  (linear-attention, chunked or shared layers keep other state) are refused;
- :func:`infer_step` ``(model, inputs, cache, start_pos)``: readies one step outside the
  recording and returns the call that runs it: the cache is cropped to the ``start_pos``
  tokens already generated (views of its tensors: a full layer's first ``start_pos`` tokens, a
  sliding layer's last ``min(start_pos, window - 1)``, as a generation of ``start_pos``
  tokens leaves them), and the call is
  ``model(input_ids, cache=cache, use_cache=True, position_ids=[start_pos, start_pos + T),
  logits_to_keep=1)``, so only the last position's logits are computed, as ``generate`` does.
  The keyword names are read from the installed version's ``forward`` (``cache`` or
  ``past_key_values``; ``logits_to_keep`` or ``num_logits_to_keep``; ``cache_position`` where
  the forward takes it).

Why ``DynamicCache`` and not ``StaticCache``: it is what a plain ``model.generate`` runs in eager
mode. Its ``update`` concatenates (``torch.cat([keys, new], dim=-2)``, transformers
``cache_utils.DynamicLayer.update``), so every step copies the whole cache into a new tensor:
the trace records that copy and the eager runtime prices it as traced; a runtime whose
attention reads the cache (``kv-cache`` fusion: a serving engine, which writes the new tokens
in place) takes the concatenation into its attention kernel's prologue, so the cache is read
once there and not copied (``cost.fusion``). ``StaticCache``, built for ``torch.compile``,
writes with ``index_copy_``. NB: during a layer's
``cat`` its old and new K/V exist together; that one layer's transient copy is not in the KV
bytes, which are the ``max_len`` tokens the cache holds.

Per-layer shapes come from the config, as transformers' attention stores them:
``(B, num_key_value_heads, L, head_dim)`` for K and for V (``head_dim`` defaults to
``hidden_size // num_attention_heads``); DeepSeek-V3's multi-head latent attention
(a config with ``kv_lora_rank``) caches its compressed latent, not per-head K/V: the
normalised ``kv_lora_rank`` latent as "keys" ``(B, 1, L, kv_lora_rank)`` and the roped shared
key as "values" ``(B, 1, L, qk_rope_head_dim)`` (transformers 5.x
``DeepseekV3Attention.forward``: "Cache read / write is performed while latent KV is still
compressed"), then expands both through ``kv_b_proj`` on every step.

A KV dtype other than the compute dtype (``--kv-dtype fp8``, ``int8``) stores each layer's K and V
in it and hands attention a compute-dtype copy, as the bundled models' hook does: each layer's
``update`` casts the new K/V down, concatenates in the KV dtype, and casts the held cache back
up (``.to``), so the cache is priced at its stored bytes and each step at the casts an eager
model runs (NB: a serving engine's kernel reads the narrow cache directly; the casts are the
eager cost). ``int8`` stores the values cast, without scales: the bytes and the ops of an int8
cache, not its numerics.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from archcost.errors import ModelFileError

__all__ = ["kv_cache", "infer_step", "layer_shapes"]



def layer_shapes(config, batch_size: int, length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(K shape, V shape) of one layer holding ``length`` tokens, as transformers caches them."""
    text = config.get_text_config(decoder=True)
    if getattr(text, "kv_lora_rank", None):  # MLA: the latent and the roped key (see above)
        return ((batch_size, 1, length, int(text.kv_lora_rank)),
                (batch_size, 1, length, int(text.qk_rope_head_dim)))
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    shape = (batch_size, kv_heads, length, head_dim)
    return shape, shape


def kv_cache(model, batch_size: int, max_len: int, dtype=None):
    """transformers' ``DynamicCache`` for ``model`` holding ``max_len`` tokens of zeros per
    layer on the parameters' device, stored in ``dtype`` (None: the parameters' dtype)."""
    import torch
    from transformers import DynamicCache

    param = next(model.parameters())
    stored = None if dtype is None or dtype == param.dtype else dtype
    cache = DynamicCache(config=model.config)
    for i, layer in enumerate(cache.layers):
        kind = type(layer).__name__
        if kind not in _LAYERS:
            raise ModelFileError(f"hf:{model.config.model_type}: layer {i} keeps a {kind} "
                                 "cache, which archcost infer does not build; pass a model "
                                 "whose layers attend in full or within a sliding window")
        sliding = kind == "DynamicSlidingWindowLayer"
        if sliding and layer.sliding_window < 4:
            raise ModelFileError(f"hf:{model.config.model_type}: a sliding window of "
                                 f"{layer.sliding_window} tokens; give sliding_window >= 4")
        if stored is not None:
            layer.__class__ = _stored_in_class(type(layer))
            layer.stored_dtype = stored
        # a sliding layer as the generation's last step leaves it: the last update's cat (its
        # storage, min(max_len, window) tokens) viewed to its last window - 1
        for n in (max_len - 1, 1) if sliding and max_len > 1 else (max_len,):
            k_shape, v_shape = layer_shapes(model.config, batch_size, n)
            layer.update(torch.zeros(k_shape, dtype=param.dtype, device=param.device),
                         torch.zeros(v_shape, dtype=param.dtype, device=param.device))
    return cache


_LAYERS = ("DynamicLayer", "DynamicSlidingWindowLayer")


@functools.cache
def _stored_in_class(base):
    """``base`` (a transformers cache layer class) holding its K/V in ``stored_dtype`` and
    returning them in the dtype attention computes in (see the module docstring)."""

    class StoredInLayer(base):
        stored_dtype = None

        def update(self, key_states, value_states, *args, **kwargs):
            keys, values = super().update(key_states.to(self.stored_dtype),
                                          value_states.to(self.stored_dtype), *args, **kwargs)
            return keys.to(key_states.dtype), values.to(value_states.dtype)

    return StoredInLayer


def _cut(cache, start_pos: int) -> None:
    """Each layer as a generation of ``start_pos`` tokens leaves it (views of the held zeros,
    no copy): a full layer its first ``start_pos`` tokens; a sliding layer the last
    ``min(start_pos, window - 1)`` with ``start_pos`` tokens seen (transformers'
    ``DynamicSlidingWindowLayer.crop`` refuses once the window is full)."""
    for layer in cache.layers:
        if not layer.is_initialized:
            continue
        if getattr(layer, "is_sliding", False):
            keep = min(start_pos, layer.sliding_window - 1)
            layer.keys, layer.values = layer.keys[:, :, :keep], layer.values[:, :, :keep]
            layer.cumulative_length = start_pos
        else:
            layer.crop(start_pos - layer.keys.shape[-2])


def _keyword(params, *names: str) -> str | None:
    return next((n for n in names if n in params), None)


def infer_step(model, inputs, cache, start_pos: int) -> Callable[[], Any]:
    """The call of one cached step of ``inputs["input_ids"]`` at ``start_pos`` (the cache cut
    back to ``start_pos`` tokens here, before the step)."""
    import torch

    ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs[0]
    held = cache.get_seq_length()
    if held < start_pos:
        raise ModelFileError(f"hf: the cache holds {held} tokens, fewer than the "
                             f"{start_pos} the step starts after; build it with max_len >= "
                             f"{start_pos + ids.shape[1]}")
    if held > start_pos:
        _cut(cache, start_pos)
    params = inspect.signature(model.forward).parameters
    positions = torch.arange(start_pos, start_pos + ids.shape[1], device=ids.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": True,
                              "position_ids": positions.unsqueeze(0).expand(ids.shape[0], -1)}
    kwargs[_keyword(params, "cache", "past_key_values") or "past_key_values"] = cache
    keep = _keyword(params, "logits_to_keep", "num_logits_to_keep")
    if keep:
        kwargs[keep] = 1
    if "cache_position" in params:
        kwargs["cache_position"] = positions
    return lambda: model(**kwargs)
