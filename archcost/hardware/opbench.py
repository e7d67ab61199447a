"""Calibration benchmarks beyond matmul and copies: convolutions, the pointwise, normalisation,
reduction and loss ops whose speed their bytes do not tell, and the per-op overhead of each
phase of an eager training step.

- ``conv``: ``aten.convolution`` forward and ``aten.convolution_backward`` (its saved input
  out of cache) over a grid of ResNet-like shapes -> ``conv_efficiency`` (FLOPs by the
  tracer's rule, as matmuls).
- ``ops``: each op of :data:`OPS` at a few sizes, called through ``torch.ops.aten`` on real
  tensors -> ``op_efficiency[op]``, the op's bytes (the tracer's rule) over its time less the
  launch overhead, as a fraction of the measured memory bandwidth. On a GPU these ops stream at
  close to the copy bandwidth; on a CPU a tanh-GELU, a softmax or a layer-norm backward is
  compute-bound at a fraction of it, and the plain roofline under-counts them several times.
  Backward ops and the optimizer's updates (:data:`COLD`) run on operands evicted from the
  last-level cache, as in a step; forward ops on operands in cache, as a layer's output is
  when the next op reads it.
- ``overhead``: a chain of small functional blocks (linear, layer norm, GELU, residual add)
  on 16-wide tensors, forward and backward, and an AdamW step (``foreach=False``) over its
  parameters: each phase's time less the work the engine gives its ops, over the ops it
  charges (views excluded) -> ``op_overhead``: what one op costs beyond its work in that phase
  (dispatch, autograd recording, the autograd engine, the optimizer's Python loop). Python
  module calls are not in it: their cost varies by model and the engine does not see them.
- ``dispatch``: under ``torch.inference_mode``, a chain of view ops (view, transpose,
  unsqueeze, select on a small tensor) and a chain of ``nn.Identity`` calls through an
  ``nn.Sequential`` -> ``dispatch_overhead``: seconds per view op and per nn.Module call, what
  eager Python pays for the calls the engine gives no work (inference pricing charges them
  for runtimes that run the model as Python). The inference phase of ``op_overhead`` has its
  chain's own views taken off at that figure, so a view is charged once. NB: the chain's views
  are those ``F.linear`` dispatches in C++ (``aten.t``), cheaper than a Python-level view; the
  subtraction takes them at the Python-level figure, a model's views being mostly such.

Every op's size comes from ``trace.probe`` (the cost rules applied to the real call), so a
profile built from these points reproduces the measured times when the engine evaluates it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from archcost.hardware.calibrate import (
    Grid,
    Measurements,
    Point,
    Progress,
    _sync_for,
    _time_calls,
)
from archcost.hardware.fit import spread

__all__ = ["OPS", "measure_conv", "measure_ops", "measure_overheads", "measure_dispatch"]

_WIDTH = 1024  # row length of the row-wise ops (normalisations, softmax)
# row length of their "(short)" forms (``trace.graph.efficiency_key``: rows under one vector),
# a top-2 router's over 4 experts
_SHORT = 4


def _ops_table(torch) -> dict[str, Callable[[int, Any], Callable[[], Any]]]:
    """op name -> (numel, device) -> a call of that op on fresh random tensors."""
    aten = torch.ops.aten
    F = torch.nn.functional

    def rows(n, dev, width=_WIDTH):
        return torch.randn(max(1, n // width), width, device=dev)

    def unary(fn, width=_WIDTH):
        def make(n, dev):
            x = rows(n, dev, width)
            return lambda: fn(x)
        return make

    def backward(fn, width=_WIDTH):  # (gradient, input); binary ops take two inputs the same way
        def make(n, dev):
            g, x = rows(n, dev, width), rows(n, dev, width)
            return lambda: fn(g, x)
        return make

    def positive(fn):  # (any, positive) operands built once
        def make(n, dev):
            a, b = rows(n, dev), rows(n, dev).abs() + 1.0
            return lambda: fn(a, b)
        return make

    def scale_in_place(n, dev):
        a, one = rows(n, dev), torch.ones(max(1, n // _WIDTH), _WIDTH, device=dev)
        return lambda: a.mul_(one)

    def softmax_bwd(op, fwd, width=_WIDTH):
        def make(n, dev):
            x = rows(n, dev, width)
            y = fwd(x, -1, False)
            g = torch.randn_like(y)
            return lambda: op(g, y, -1, x.dtype)
        return make

    def layer_norm(n, dev):
        x, w, b = rows(n, dev), torch.randn(_WIDTH, device=dev), torch.randn(_WIDTH, device=dev)
        return lambda: aten.native_layer_norm(x, [_WIDTH], w, b, 1e-5)

    def layer_norm_bwd(n, dev):
        x, w, b = rows(n, dev), torch.randn(_WIDTH, device=dev), torch.randn(_WIDTH, device=dev)
        _, mean, rstd = aten.native_layer_norm(x, [_WIDTH], w, b, 1e-5)
        g = torch.randn_like(x)
        return lambda: aten.native_layer_norm_backward(g, x, [_WIDTH], mean, rstd, w, b,
                                                       [True, True, True])

    def image(n, dev):  # (N, C, H, W) with C = 64, 16 x 16 maps
        return torch.randn(max(1, n // (64 * 256)), 64, 16, 16, device=dev)

    def batch_norm(n, dev):
        x = image(n, dev)
        w, b = torch.ones(64, device=dev), torch.zeros(64, device=dev)
        rm, rv = torch.zeros(64, device=dev), torch.ones(64, device=dev)
        return lambda: aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)

    def batch_norm_bwd(n, dev):
        x = image(n, dev)
        w, b = torch.ones(64, device=dev), torch.zeros(64, device=dev)
        rm, rv = torch.zeros(64, device=dev), torch.ones(64, device=dev)
        _, mean, invstd = aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)
        g = torch.randn_like(x)
        return lambda: aten.native_batch_norm_backward(g, x, w, rm, rv, mean, invstd, True, 1e-5,
                                                       [True, True, True])

    def nll(n, dev):
        logp = F.log_softmax(rows(n, dev), -1)
        t = torch.randint(0, _WIDTH, (logp.shape[0],), device=dev)
        return lambda: aten.nll_loss_forward(logp, t, None, 1, -100)

    def nll_bwd(n, dev):
        logp = F.log_softmax(rows(n, dev), -1)
        t = torch.randint(0, _WIDTH, (logp.shape[0],), device=dev)
        _, total = aten.nll_loss_forward(logp, t, None, 1, -100)
        g = torch.ones((), device=dev)
        return lambda: aten.nll_loss_backward(g, logp, t, None, 1, -100, total)

    def index_add(n, dev):  # rows scattered into a buffer one row longer, a dispatch's
        src = rows(n, dev)
        buf = torch.zeros(src.shape[0] + 1, _WIDTH, device=dev)
        idx = torch.randperm(src.shape[0] + 1, device=dev)[: src.shape[0]]
        return lambda: aten.index_add(buf, 0, idx, src)

    def index_select(n, dev):  # rows gathered back in a permuted order, a combine's
        x = rows(n, dev)
        idx = torch.randperm(x.shape[0], device=dev)
        return lambda: aten.index_select(x, 0, idx)

    def maxpool(n, dev):
        x = image(n, dev)
        return lambda: aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1])

    return {
        # GELU: the exact (erf) form and the tanh approximation, each its own curve (the
        # trace keys the tanh form "aten.gelu(tanh)"): on an AVX-512 CPU the tanh form of a
        # 1M-element tensor takes 2.5 ms, the exact one 0.57 ms
        "aten.gelu": unary(lambda x: aten.gelu(x)),
        "aten.gelu(tanh)": unary(lambda x: aten.gelu(x, approximate="tanh")),
        "aten.gelu_backward": backward(aten.gelu_backward),
        "aten.gelu_backward(tanh)": backward(lambda g, x: aten.gelu_backward(
            g, x, approximate="tanh")),
        "aten.silu": unary(aten.silu),
        "aten.silu_backward": backward(aten.silu_backward),
        "aten.relu": unary(aten.relu),
        "aten.threshold_backward": backward(lambda g, x: aten.threshold_backward(g, x, 0.0)),
        "aten.sigmoid": unary(aten.sigmoid),
        "aten.tanh": unary(aten.tanh),
        "aten.exp": unary(aten.exp),
        "aten.rsqrt": unary(aten.rsqrt),
        "aten.pow": unary(lambda x: aten.pow(x, 2)),
        "aten.mul": backward(aten.mul),
        "aten.add": backward(aten.add),
        "aten.sum": unary(lambda x: aten.sum(x, [0])),  # a bias gradient: rows summed
        "aten.mean": unary(lambda x: aten.mean(x, [-1], True)),
        "aten._softmax": unary(lambda x: aten._softmax(x, -1, False)),
        "aten._softmax_backward_data": softmax_bwd(aten._softmax_backward_data, aten._softmax),
        "aten._log_softmax": unary(lambda x: aten._log_softmax(x, -1, False)),
        "aten._log_softmax_backward_data": softmax_bwd(aten._log_softmax_backward_data,
                                                       aten._log_softmax),
        "aten.nll_loss_forward": nll,
        "aten.nll_loss_backward": nll_bwd,
        "aten.native_layer_norm": layer_norm,
        "aten.native_layer_norm_backward": layer_norm_bwd,
        "aten.native_batch_norm": batch_norm,
        "aten.native_batch_norm_backward": batch_norm_bwd,
        "aten.max_pool2d_with_indices": maxpool,
        "aten.cat": backward(lambda a, b: aten.cat([a, b], -1)),
        # the "(short)" forms: rows of _SHORT elements (a router's softmax and top-k over its
        # experts; a rotary embedding's halves of a 16-wide head concatenated)
        "aten._softmax(short)": unary(lambda x: aten._softmax(x, -1, False), _SHORT),
        "aten._softmax_backward_data(short)": softmax_bwd(aten._softmax_backward_data,
                                                          aten._softmax, _SHORT),
        "aten._log_softmax(short)": unary(lambda x: aten._log_softmax(x, -1, False), _SHORT),
        "aten._log_softmax_backward_data(short)": softmax_bwd(
            aten._log_softmax_backward_data, aten._log_softmax, _SHORT),
        "aten.topk": unary(lambda x: aten.topk(x, 2, -1)),
        "aten.topk(short)": unary(lambda x: aten.topk(x, 2, -1), _SHORT),
        "aten.cat(short)": backward(lambda a, b: aten.cat([a, b], -1), _SHORT),
        "aten.index_add": index_add,
        "aten.index_select": index_select,
        "aten.clone": unary(aten.clone),
        # an optimizer's in-place updates (AdamW, foreach=False)
        # (values stay normal over thousands of calls: denormals would time something else)
        "aten.mul_": scale_in_place,
        "aten.add_": backward(lambda a, b: a.add_(b, alpha=0.1)),
        "aten.lerp_": backward(lambda a, b: a.lerp_(b, 0.1)),
        "aten.addcmul_": backward(lambda a, b: a.addcmul_(b, b, value=0.001)),
        "aten.addcdiv_": positive(lambda a, b: a.addcdiv_(b, b, value=-1e-6)),
        "aten.sqrt": positive(lambda a, b: aten.sqrt(b)),
        "aten.div": positive(lambda a, b: aten.div(a, b)),
    }


OPS = ("aten.gelu", "aten.gelu(tanh)", "aten.gelu_backward", "aten.gelu_backward(tanh)",
       "aten.silu", "aten.silu_backward", "aten.relu",
       "aten.threshold_backward", "aten.sigmoid", "aten.tanh", "aten.exp", "aten.rsqrt",
       "aten.pow", "aten.mul", "aten.add", "aten.sum", "aten.mean", "aten._softmax",
       "aten._softmax_backward_data", "aten._log_softmax", "aten._log_softmax_backward_data",
       "aten.nll_loss_forward", "aten.nll_loss_backward", "aten.native_layer_norm",
       "aten.native_layer_norm_backward", "aten.native_batch_norm",
       "aten.native_batch_norm_backward", "aten.max_pool2d_with_indices", "aten.cat",
       "aten.clone", "aten.mul_", "aten.add_", "aten.lerp_", "aten.addcmul_", "aten.addcdiv_",
       "aten.sqrt", "aten.div", "aten._softmax(short)", "aten._softmax_backward_data(short)",
       "aten._log_softmax(short)", "aten._log_softmax_backward_data(short)", "aten.topk",
       "aten.topk(short)", "aten.cat(short)", "aten.index_add", "aten.index_select")


def _size_of(fn: Callable[[], Any], op: str, key: str) -> int:
    """FLOPs or bytes of ``op`` (a form's key: its op's) in one call of ``fn``, by the cost
    rules."""
    from archcost.trace.graph import key_op
    from archcost.trace.probe import probe

    _, ops = probe(fn)
    sizes = [getattr(p, key) for p in ops if p.op == key_op(op)]
    if not sizes:
        raise RuntimeError(f"the {op} benchmark ran {[p.op for p in ops]}, not {op}")
    return int(sum(sizes))


# ops a training step runs on data that is not in cache: backward kernels read activations
# saved in forward, the optimizer's in-place updates read states touched once a step
COLD = frozenset({"aten.gelu_backward", "aten.gelu_backward(tanh)", "aten.silu_backward",
                  "aten.threshold_backward",
                  "aten._softmax_backward_data", "aten._log_softmax_backward_data",
                  "aten._softmax_backward_data(short)", "aten._log_softmax_backward_data(short)",
                  "aten.native_layer_norm_backward", "aten.native_batch_norm_backward",
                  "aten.mul_", "aten.add_", "aten.lerp_", "aten.addcmul_", "aten.addcdiv_",
                  "aten.sqrt", "aten.div"})


def _out_of_cache(nbytes: float, cache_bytes: float) -> int:
    """Copies of ``nbytes`` of operands that together are twice the last-level cache: cycling
    over them, each call finds its own evicted."""
    return max(1, math.ceil(2 * cache_bytes / nbytes))


def _made(make: Callable[[int, Any], Callable[[], Any]], numel: int, device: str
          ) -> tuple[Callable[[], Any], int]:
    """A call made by ``make`` and the bytes of the tensors made for it: every tensor an op
    returned while it was made (its operands, and temporaries, once per storage). Each
    storage is held until ``make`` returns, so a temporary freed on the way cannot hand its
    address to the next one and be counted once for two."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    storages: dict[int, tuple[Any, int]] = {}

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    storages[st.data_ptr()] = (st, st.nbytes())
            return out

    with _Count():
        fn = make(numel, device)
    held = sum(n for _, n in storages.values())
    storages.clear()
    return fn, held


def _cold(make: Callable[[int, Any], Callable[[], Any]], numel: int, device: str,
          cache_bytes: float, most: int) -> tuple[Callable[[], Any], int]:
    """(call, bytes held): calls cycling over copies of the operands out of cache, as many
    copies as make twice the last-level cache by the bytes one copy holds, at most ``most``
    (a call of a few KiB then cycles over less than twice a large last-level cache, out of the
    per-core caches still, and building the copies stays quick)."""
    first, held = _made(make, numel, device)
    copies = min(most, _out_of_cache(max(held, 1), cache_bytes))
    calls = itertools.cycle([first] + [make(numel, device) for _ in range(copies - 1)])
    return (lambda: next(calls)()), copies * held


def _copies(t, cache_bytes: float, most: int = 64):
    """An endless cycle over copies of ``t`` that together are twice the last-level cache: the
    input a backward convolution reads was saved in forward and is out of cache by then."""
    n = min(most, _out_of_cache(t.numel() * t.element_size(), cache_bytes))
    return itertools.cycle([t.clone() for _ in range(n)])


def measure_ops(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    """Each op of :data:`OPS` at each size of ``grid.op_numels`` -> ``m.ops[op]`` points; the
    ops of :data:`COLD` on operands out of cache. The ops of one size are timed together, their
    repetitions interleaved, in batches whose operands stay within an eighth of the memory
    (``m.mem_bytes``): each cold op holds twice the last-level cache, and a large one (hundreds
    of MiB on some servers) held by every cold op at once would not fit."""
    import torch

    table = _ops_table(torch)
    sync = _sync_for(device)
    cache = m.llc_or_assumed
    budget = (m.mem_bytes or 8 * 2**30) / 8
    found: dict[str, list[Point]] = {}

    def run(batch: list[tuple[str, Callable[[], Any]]]) -> None:
        sizes = [_size_of(fn, op, "nbytes") for op, fn in batch]
        timed_all = _time_calls([fn for _, fn in batch], sync, grid)
        for (op, _), nbytes, timed in zip(batch, sizes, timed_all):
            if timed.samples is None:
                m.skipped.append({"bench": "op", "op": op, "numel": numel,
                                  "reason": f"one call takes over {grid.max_call_s} s"})
            else:
                found.setdefault(op, []).append(
                    Point("op", {"op": op, "numel": numel, "cold": op in COLD}, nbytes,
                          spread(timed.samples), timed.iters))

    for numel in grid.op_numels:
        batch: list[tuple[str, Callable[[], Any]]] = []
        held = 0
        for op in OPS:
            fn, size = (_cold(table[op], numel, device, cache, grid.cold_copies) if op in COLD
                        else _made(table[op], numel, device))
            if batch and held + size > budget:
                run(batch)
                batch, held = [], 0
            batch.append((op, fn))
            held += size
        run(batch)
        del batch
        progress(f"ops at {numel} elements")
    m.ops.update({op: found[op] for op in OPS if op in found})


def measure_conv(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    """Convolution forward and backward (input and weight gradients) over ``grid.conv_shapes``
    (batch, channels in, channels out, map size, kernel, stride) in fp32."""
    import torch

    if device != "cpu":  # GPU convolutions run in the model's dtype: the matmul curve stands
        return
    aten = torch.ops.aten
    sync = _sync_for(device)
    cache = m.llc_or_assumed
    calls, params = [], []
    for n, cin, cout, hw, k, stride in grid.conv_shapes:
        x = torch.randn(n, cin, hw, hw, device=device)
        w = torch.randn(cout, cin, k, k, device=device)
        pad = [k // 2, k // 2]
        y = aten.convolution(x, w, None, [stride, stride], pad, [1, 1], False, [0, 0], 1)
        g = torch.randn_like(y)
        saved = _copies(x, cache)
        calls += [
            ("aten.convolution", lambda x=x, w=w, pad=pad, s=stride: aten.convolution(
                x, w, None, [s, s], pad, [1, 1], False, [0, 0], 1)),
            ("aten.convolution_backward", lambda g=g, xs=saved, w=w, pad=pad, s=stride:
                aten.convolution_backward(g, next(xs), w, None, [s, s], pad, [1, 1], False,
                                          [0, 0], 1, [True, True, False])),
        ]
        shape = {"batch": n, "c_in": cin, "c_out": cout, "hw": hw, "kernel": k, "stride": stride}
        params += [{"direction": "forward", **shape}, {"direction": "backward", **shape}]
    flops = [_size_of(fn, op, "flops") for op, fn in calls]
    timed_all = _time_calls([fn for _, fn in calls], sync, grid)
    for p, size, timed in zip(params, flops, timed_all):
        if timed.samples is None:
            m.skipped.append({"bench": "conv", **p,
                              "reason": f"one call takes over {grid.max_call_s} s"})
        else:
            m.conv.append(Point("conv", p, size, spread(timed.samples), timed.iters))
    for _, cin, cout, hw, k, _ in grid.conv_shapes:
        progress(f"conv {cin}->{cout} {hw}x{hw} k{k}")


def _chain(torch, width: int, depth: int, device: str = "cpu"):
    """Parameters and the forward of ``depth`` x (linear, layer norm, GELU, residual add) as
    plain functional calls: per-op costs without Python module calls, which vary by model."""
    F = torch.nn.functional
    params = []
    for _ in range(depth):
        params += [torch.nn.Parameter(torch.randn(width, width, device=device) / width ** 0.5),
                   torch.nn.Parameter(torch.zeros(width, device=device)),
                   torch.nn.Parameter(torch.ones(width, device=device)),
                   torch.nn.Parameter(torch.zeros(width, device=device))]

    def forward(x):
        for i in range(0, len(params), 4):
            w, b, g, beta = params[i:i + 4]
            x = x + F.gelu(F.layer_norm(F.linear(x, w, b), (width,), g, beta))
        return x.sum()

    return params, forward


def measure_overheads(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    """Per-op overhead of forward, backward and an AdamW step, and of the forward under
    ``torch.inference_mode`` (``inference``: no autograd bookkeeping, as generation runs)
    -> ``m.overheads``. On a GPU the ops are tiny next to their host's work, so each phase's
    time is the host's: the device is synchronised after every repetition, not inside it (the
    host runs ahead of its kernels, as in a step), and the figure is the host's time per op."""
    import torch

    from archcost.trace.probe import probe

    width, depth, reps = 16, 24, max(5, grid.reps)
    torch.manual_seed(0)
    params, chain = _chain(torch, width, depth, device)
    x = torch.randn(4, width, device=device)
    sync = _sync_for(device)
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)

    def forward():
        return chain(x)

    def one_step():
        loss = forward()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # optimizer states exist, caches warm
        one_step()
    sync()
    loss, fwd_ops = probe(forward)
    _, bwd_ops = probe(loss.backward)
    _, opt_ops = probe(opt.step)
    opt.zero_grad(set_to_none=True)
    fwd_t, bwd_t, opt_t = [], [], []
    for _ in range(reps):
        iters = 20
        f = b = o = 0.0
        for _ in range(iters):
            t0 = time.perf_counter()
            loss = forward()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            f, b, o = f + t1 - t0, b + t2 - t1, o + t3 - t2
        sync()
        fwd_t.append(f / iters)
        bwd_t.append(b / iters)
        opt_t.append(o / iters)
    # the forward as generation runs it: no autograd records (torch.inference_mode)
    with torch.inference_mode():
        inf_t = _per_call_times(forward, reps, iters=20, sync=sync)
    for phase, ops, times in (("forward", fwd_ops, fwd_t), ("backward", bwd_ops, bwd_t),
                              ("optimizer", opt_ops, opt_t), ("inference", fwd_ops, inf_t)):
        charged = [p for p in ops if p.charged]
        sp = spread(times)
        m.overheads[phase] = {"ops": len(charged), "views": len(ops) - len(charged),
                              "median_s": sp.median, "p10_s": sp.p10,
                              "p90_s": sp.p90, "reps": sp.reps,
                              "workload": f"{depth} x (linear, layer_norm, gelu, add) on "
                                          f"(4, {width}); AdamW foreach=False",
                              "charged": [[p.op, p.op_class, p.flops, p.nbytes]
                                          for p in charged]}
    progress("per-op overhead")


def _per_call_times(fn: Callable[[], Any], reps: int, iters: int,
                    sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds per call of ``fn``: 3 warm-up calls, then ``reps`` repetitions of ``iters``
    calls each, timed on the host (``sync``: the device, before each repetition starts and
    after it ends)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / iters)
    return times


def _dispatch_chains(torch, n: int, device: str = "cpu"):
    """(a chain of ``n`` view ops on a (4, 16) tensor, a chain of ``n`` nn.Module calls: an
    nn.Sequential of ``n - 1`` nn.Identity) as calls."""
    x = torch.randn(4, 16, device=device)

    def views():
        y = x
        for _ in range(n // 6):  # (4, 16) -> (16, 4) -> (1, 16, 4) -> (16, 4) -> (4, 16) x 3
            y = y.view(16, 4).unsqueeze(0)[0].view(4, 16).transpose(0, 1).transpose(0, 1)
        return y

    seq = torch.nn.Sequential(*[torch.nn.Identity() for _ in range(n - 1)])
    return views, lambda: seq(x)


def _module_calls(torch, fn: Callable[[], Any]) -> int:
    """nn.Module calls one call of ``fn`` makes, counted by a global forward pre-hook."""
    calls = [0]

    def count(_m, _args):
        calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


def measure_dispatch(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    """Seconds per view op and per nn.Module call under ``torch.inference_mode`` ->
    ``m.dispatch[kind]``: the chain's median time, the calls in it and the time per call."""
    import torch

    from archcost.trace.probe import probe

    n, reps = 60, max(5, grid.reps)
    views, modules = _dispatch_chains(torch, n, device)
    _, ops = probe(views)
    if any(p.charged for p in ops):
        raise RuntimeError(f"the view chain ran charged ops: {[p.op for p in ops if p.charged]}")
    counts = {"view": len(ops), "module_call": _module_calls(torch, modules)}
    with torch.inference_mode():
        for kind, fn in (("view", views), ("module_call", modules)):
            sp = spread(_per_call_times(fn, reps, iters=50))
            m.dispatch[kind] = {"calls": counts[kind], "median_s": sp.median, "p10_s": sp.p10,
                                "p90_s": sp.p90, "reps": sp.reps,
                                "per_call_s": sp.median / counts[kind],
                                "workload": ("view, unsqueeze, select, view, transpose, "
                                             "transpose on (4, 16)"
                                             if kind == "view" else
                                             f"nn.Sequential of {n - 1} nn.Identity on (4, 16)")}
    progress("dispatch overhead")
