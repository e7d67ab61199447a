"""Output shapes for ops whose fake (meta) kernel refuses what the real kernel accepts.

A fake kernel checks what its device kernels need, and some check more than the CPU kernel:
``aten._grouped_mm``'s meta kernel demands bf16 operands, which the CPU kernel does not (it runs
fp32), so an fp32 mixture-of-experts model from ``transformers`` could not be traced. That is
a gap of the tracer, not of the model: when a fake kernel raises, the capture

1. uses a shape rule of its own from the registry below (each checked in
   ``tests/test_fallbacks.py`` against the real kernel's output shape), else
2. when the op's tensors are small (at most ``PROBE_LIMIT`` elements together), runs the real
   CPU kernel on zeros of the same shapes, strides and dtypes and takes its output shapes; if
   the real kernel refuses them too, the model's code or example inputs are at fault, and the
   error says so;
3. otherwise stops with an error naming the op and its module, saying which side is at fault
   when the real kernel accepts the inputs.

An op without any fake kernel (a custom op registered for CPU or CUDA only) is not a gap of a
fake kernel: the error asks for one (``torch.library.register_fake``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch._subclasses.fake_tensor import UnsupportedOperatorException
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map

from archcost.errors import TraceError

__all__ = ["OpRefused", "PROBE_LIMIT", "SHAPE_RULES", "fallback_output", "shape_rule"]

PROBE_LIMIT = 1 << 22  # elements of all tensor arguments together: a real run on zeros is cheap

SHAPE_RULES: dict[str, Callable] = {}  # overload name ("aten._grouped_mm.default") -> rule


class OpRefused(TraceError):
    """An op of the step could not be run on fake tensors; ``gap``: archcost is at fault."""

    def __init__(self, op, module: str, detail: str, gap: bool):
        self.op, self.module, self.detail, self.gap = str(op), module, detail, gap
        super().__init__(self.text())

    def text(self) -> str:
        where = f"op {self.op} in module '{self.module}'" if self.module else f"op {self.op}"
        if self.gap:
            return (f"{where} {self.detail}: archcost's gap, not your model's or example_inputs' "
                    "(report it; --debug shows where)")
        return f"{where} {self.detail}"


def shape_rule(*overloads: str):
    """Register ``fn(*args, **kwargs) -> outputs`` (run inside fake mode) for the overloads."""

    def deco(fn):
        for name in overloads:
            if name in SHAPE_RULES:
                raise ValueError(f"shape rule for {name} registered twice")
            SHAPE_RULES[name] = fn
        return fn

    return deco


@shape_rule("aten._grouped_mm.default")
def grouped_mm(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    """torch's ``_grouped_mm`` layouts (``torch/_meta_registrations.py``, less the dtype check):
    2-D x 3-D (M, K) x (G, K, N) -> (M, N), groups of rows split by ``offs``; 3-D x 2-D
    (G, M, K) x (K, N) -> (M, N), columns split; 2-D x 2-D (M, K) x (K, N) -> (G, M, N), the
    contraction split; 3-D x 3-D (G, M, K) x (G, K, N) -> (G, M, N)."""
    a, b = tuple(mat_a.shape), tuple(mat_b.shape)
    if len(a) == 2 and len(b) == 3:
        shape = (a[0], b[2])
    elif len(a) == 3 and len(b) == 2:
        shape = (a[1], b[1])
    elif len(a) == 2 and len(b) == 2:
        shape = (offs.shape[0], a[0], b[1])
    else:
        shape = (a[0], a[1], b[2])
    return torch.empty(shape, dtype=out_dtype or mat_a.dtype, device=mat_a.device)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


def fallback_output(func, args, kwargs, exc: Exception, where: Callable[[], str]):
    """Outputs of ``func`` whose fake kernel raised ``exc`` (call inside fake mode), and how
    they were found; raises :class:`OpRefused` when no way applies."""
    if isinstance(exc, UnsupportedOperatorException):
        raise OpRefused(func, where(), "has no fake-tensor kernel, so it cannot be traced "
                        "without data; register one (torch.library.register_fake) or replace "
                        "it with standard torch ops", gap=False) from exc
    rule = SHAPE_RULES.get(str(func))
    if rule is not None:
        return rule(*args, **kwargs), f"archcost's shape rule (its fake kernel: {_first_line(exc)})"
    tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
    reason = _first_line(exc)
    if sum(t.numel() for t in tensors) > PROBE_LIMIT:
        raise OpRefused(func, where(), f"was refused by its fake kernel ({reason}); if the model "
                        "runs on these inputs for real, the fake kernel is stricter than the "
                        "real one (archcost's gap: report it); if not, make example_inputs match "
                        "the model's forward", gap=False) from exc

    def zeros(x):
        if not isinstance(x, torch.Tensor):
            return x
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype).zero_()

    with _disable_current_modes(), torch.no_grad():
        ra, rk = tree_map(zeros, (args, kwargs))
        try:
            real = func(*ra, **rk)
        except Exception as real_exc:
            raise OpRefused(func, where(), f"refused its arguments ({reason}); the real kernel "
                            f"refuses them too ({_first_line(real_exc)}): make example_inputs "
                            "match the model's forward", gap=False) from exc
    out = tree_map(lambda r: torch.empty_strided(r.shape, r.stride(), dtype=r.dtype)
                   if isinstance(r, torch.Tensor) else r, real)
    return out, f"the real kernel run on zeros (its fake kernel: {reason})"
