"""Real timed generation of a model file with its KV cache on this machine: the measured side of
``archcost validate --infer``.

The model is materialised for real (random initialisation, seed 0, ``eval()``, the requested
dtype) at the length the generation reaches (input + output) and generates greedily under
``torch.inference_mode``, as a static-batching benchmark does (TensorRT-LLM's
``gptSessionBenchmark``, which ``archcost.infer.serving`` prices): a prefill of the ``(B, I)``
prompt into an empty cache of ``I + O`` tokens, the first token taken from its last logits,
then ``O - 1`` decode steps of one token per sequence, each fed the token the previous one
chose.

Timing: host timers (``time.perf_counter``) around each step, the device synchronised before
each reading on CUDA (on CPU the ops run synchronously). TTFT is the prefill with the first
token's argmax; a decode step is the forward at one position with its argmax. Allocating the
empty cache and drawing the prompt are outside the timed steps (``archcost.infer.capture``
leaves them out of a step too). ``warmup`` whole generations run untimed first, then
``repeats`` timed ones; each figure is the median over the timed generations, per step (TTFT,
and each decode step by its index), and ``tpot_s`` is the mean of the decode steps' medians,
as ``static_serving``'s TPOT is the mean of its steps. A decode step at position ``p`` attends
``p + 1`` tokens, its context in ``tpot_by_context`` (``serving.static_serving``'s convention:
contexts ``I + 1 .. I + O - 1``). Threads: torch's default in this process, as one-process
``archcost validate`` runs its training steps. On the CPU the process keeps the memory its steps
free (``archcost.validate.allocator``), so a step does not take fresh zeroed pages from the
kernel; ``allocator`` in the result says what was set. On the CPU one more generation, untimed,
counts the subnormal floats its ops put out (``subnormal``: ``archcost.validate.subnormal``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from archcost.infer.capture import logits_of
from archcost.validate.allocator import keep_freed_memory
from archcost.validate.step import DTYPES

__all__ = ["GenerateConfig", "prefill", "run_generation"]


@dataclass(frozen=True)
class GenerateConfig:
    model: str  # model file (path or path:builder)
    overrides: dict[str, Any]
    batch: int
    input_len: int
    output_len: int
    dtype: str  # fp32, bf16, fp16
    repeats: int  # timed generations
    warmup: int  # untimed generations first
    device: str = "cpu"  # cpu, cuda


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def last_logits(out) -> torch.Tensor:
    """The last position's logits (B, 1, vocab) of a forward's output (``logits_of``: the
    tensor a model file returns, or an ``hf:`` model's output's ``logits``)."""
    return logits_of(out)[:, -1:]


def prefill(spec, model, prompt, cache):
    """The prompt's forward from position 0 into ``cache`` (the spec's cached call: the
    model-file convention, or transformers' own for an ``hf:`` model): the last position's
    logits (B, 1, vocab)."""
    return last_logits(spec.infer_step(model, prompt, cache, 0)())


def _generate(spec, model, prompt, cfg: GenerateConfig, device: torch.device
              ) -> tuple[float, list[float], torch.Tensor]:
    """One greedy generation: (TTFT, seconds of each decode step, the tokens generated). Each
    step's call is readied (an ``hf:`` cache cut back to the step's start) before its clock
    starts."""
    cache = spec.kv_cache(model, cfg.batch, cfg.input_len + cfg.output_len)
    tokens = []
    call = spec.infer_step(model, prompt, cache, 0)
    _sync(device)
    t0 = time.perf_counter()
    token = last_logits(call()).argmax(-1)  # (B, 1) greedy
    _sync(device)
    ttft = time.perf_counter() - t0
    tokens.append(token)
    steps = []
    for k in range(cfg.output_len - 1):
        call = spec.infer_step(model, (token,), cache, cfg.input_len + k)
        t0 = time.perf_counter()
        token = last_logits(call()).argmax(-1)  # (B, 1)
        _sync(device)
        steps.append(time.perf_counter() - t0)
        tokens.append(token)
    return ttft, steps, torch.cat(tokens, dim=1)  # (B, O)


def run_generation(cfg: GenerateConfig) -> dict[str, Any]:
    """Build the model, generate ``warmup + repeats`` times and measure (module docstring):
    ``ttft_s``, ``tpot_s``, ``tpot_by_context`` [(context, seconds)], the spread of each over
    the timed generations and the tokens of the last one."""
    from archcost.loader import load_model_file

    device = torch.device(cfg.device)
    allocator = keep_freed_memory() if device.type == "cpu" else \
        "system allocator as configured (the steps' tensors are on the device)"
    dtype = DTYPES[cfg.dtype]
    spec = load_model_file(cfg.model, cfg.overrides)
    torch.manual_seed(0)
    model = spec.build(cfg.batch, cfg.input_len + cfg.output_len).to(device=device, dtype=dtype)
    model.eval()
    torch.manual_seed(1)
    inputs = spec.inputs(model, cfg.batch, cfg.input_len)  # token ids (B, I)
    prompt = {k: v.to(device) for k, v in inputs.items()} if isinstance(inputs, dict) else \
        tuple(x.to(device) for x in inputs)
    runs = []
    with torch.inference_mode():
        for _ in range(cfg.warmup):
            _generate(spec, model, prompt, cfg, device)
        for _ in range(cfg.repeats):
            runs.append(_generate(spec, model, prompt, cfg, device))
        subnormal = None
        if device.type == "cpu":  # one more generation, counted (archcost.validate.subnormal)
            from archcost.validate.subnormal import count_subnormals

            subnormal = count_subnormals(lambda: _generate(spec, model, prompt, cfg, device))
    ttfts = [r[0] for r in runs]
    per_step = [statistics.median(r[1][k] for r in runs) for k in range(cfg.output_len - 1)]
    means = [statistics.fmean(r[1]) for r in runs if r[1]]
    return {
        "ttft_s": statistics.median(ttfts),
        "tpot_s": statistics.fmean(per_step) if per_step else None,  # None: no decode step
        "tpot_by_context": [(cfg.input_len + 1 + k, s) for k, s in enumerate(per_step)],
        "spread": {"ttft_s": [min(ttfts), max(ttfts)],
                   "tpot_s": [min(means), max(means)] if means else None},
        "repeats": cfg.repeats, "warmup": cfg.warmup, "allocator": allocator,
        "subnormal": subnormal, "tokens": runs[-1][2].tolist(),
    }
