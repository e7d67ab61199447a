"""Values a capture on fake tensors can know, and the assumptions for those it cannot.

Fake tensors carry shapes, not numbers, so an op whose output shape or Python result depends on
data (``nonzero``, ``x[mask]``, ``.item()``, ``repeat_interleave`` by counts, ``unique``)
cannot run on them. Many such values are known though: the inputs ``example_inputs`` builds,
constants, ``arange``, and everything computed from those alone. :class:`Values` keeps, beside
each fake tensor of at most ``LIMIT`` elements whose value is known, a real CPU tensor holding
it (its *shadow*), computed by running the same op for real on the inputs' shadows. A
data-dependent op then runs for real on shadows and gets a fake output of the real shape.

What depends on the weights stays unknown, and is assumed (``archcost.trace.assume``):
``topk``/``argmax`` indices picked from such values follow the routing assumption (balanced by
default); ``sort`` finds them in order; a boolean tensor is true at ``mask_density`` of its
elements, integers read 0, floating values 1. Each assumption used is logged (``routers``,
``bounds``) for the analysis document. Shadows of index results are made when first read, so
a ``max`` whose indices nobody uses logs nothing.

An op whose fake kernel refuses what the real kernel accepts falls back to a shape rule
(``archcost.trace.fallbacks``).

NB: a shadow is dropped when an op writes into its storage from values not known, and is not
kept for tensors over ``LIMIT`` elements; data-dependent ops on those use the assumptions.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
)
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten
from torch.utils.weak import WeakIdKeyDictionary

from archcost.trace.assume import CaptureOptions, expert_loads
from archcost.trace.fallbacks import OpRefused, fallback_output

__all__ = ["LIMIT", "RouterUse", "BoundUse", "Values", "assignment", "assumptions"]

LIMIT = 1 << 24  # elements: larger tensors keep no shadow (a router's one-hot mask fits)

aten = torch.ops.aten
_DATA_DEPENDENT = (DataDependentOutputException, DynamicOutputShapeException)
# ops whose result does not depend on their tensor inputs' values (only on shapes)
_VALUE_FREE = {aten.zeros_like, aten.ones_like, aten.full_like, aten.empty_like, aten.new_zeros,
               aten.new_ones, aten.new_full, aten.new_empty, aten.new_empty_strided,
               aten.rand_like, aten.randn_like, aten.randint_like, aten.zero_, aten.fill_}
_UNINITIALISED = {aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty,
                  aten.new_empty_strided, aten.empty_permuted}


@dataclass
class RouterUse:
    """Indices picked by the routing assumption (one row per router and call shape)."""

    module: str
    op: str
    tokens: int
    top_k: int
    experts: int
    tokens_per_expert: list[int]
    calls: int = 1


@dataclass
class BoundUse:
    """A value assumed for a tensor computed from the weights, where an op needed it."""

    module: str
    op: str
    rule: str
    elements: int
    calls: int = 1


class _Lazy:
    """A shadow made when first read (indices the routing assumption picks)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], torch.Tensor]):
        self.make = make


@dataclass
class Values:
    """Shadows of the fake tensors whose values are known, and the assumptions used."""

    options: CaptureOptions
    where: Callable[[], str]  # the module running now (for the logs)
    active: bool = True  # shadows kept (off in the optimizer step: nothing there needs them)
    routers: dict = field(default_factory=dict)  # (module, op, N, k, E) -> RouterUse
    bounds: dict = field(default_factory=dict)  # (module, op, rule) -> BoundUse
    fallbacks: dict = field(default_factory=dict)  # (module, op) -> how the shape was found

    def __post_init__(self):
        self._shadow = WeakIdKeyDictionary()
        self._by_storage: dict[int, list] = {}
        self._writes: dict = {}

    # --- shadows -----------------------------------------------------------------------------
    def known(self, t: torch.Tensor) -> torch.Tensor | None:
        """The real value of ``t`` if known (``t`` itself when it is a real tensor)."""
        s = self._shadow.get(t)
        if s is None:
            return None if isinstance(t, FakeTensor) else t
        if type(s) is _Lazy:
            with _disable_current_modes():
                s = s.make()
            self._set(t, s)
        return s

    def _set(self, t: torch.Tensor, s) -> None:
        self._shadow[t] = s
        self._by_storage.setdefault(t.untyped_storage()._cdata, []).append(weakref.ref(t))

    def _forget_storage(self, t: torch.Tensor) -> None:
        for ref in self._by_storage.pop(t.untyped_storage()._cdata, ()):
            other = ref()
            if other is not None:
                self._shadow.pop(other, None)

    def value(self, t: torch.Tensor, op) -> torch.Tensor:
        """The value of ``t``, assumed (and logged) when not known."""
        s = self.known(t)
        if s is not None:
            return s
        if t.numel() > LIMIT:
            raise OpRefused(op, self.where(), f"reads the values of a {tuple(t.shape)} tensor "
                            "computed from the weights, too large to assume them element by "
                            "element", gap=True)
        with _disable_current_modes():
            s, rule = _assume(t, self.options.mask_density)
        self._log_bound(op, rule, t.numel())
        self._set(t, s)
        return s

    def _log_bound(self, op, rule: str, elements: int) -> None:
        key = (self.where(), str(op), rule)
        use = self.bounds.get(key)
        if use is None:
            self.bounds[key] = BoundUse(key[0], key[1], rule, elements)
        else:
            use.calls += 1

    # --- running one op ----------------------------------------------------------------------
    def run(self, func, args, kwargs):
        """Run ``func`` on fake tensors (inside the capture's dispatch), as a real run would."""
        try:
            out = func(*args, **kwargs)
        except _DATA_DEPENDENT:
            handler = _DATA_DEPENDENT_OPS.get(func._overloadpacket, _by_value)
            return handler(self, func, args, kwargs)
        except OpRefused:
            raise
        except Exception as exc:
            out, how = fallback_output(func, args, kwargs, exc, self.where)
            self.fallbacks.setdefault((self.where(), str(func)), how)
            self._forget_written(func, args, kwargs)
            return out
        if self.active:
            after = _AFTER.get(func._overloadpacket)
            if after is not None and after(self, func, args, kwargs, out):
                return out
            self._propagate(func, args, kwargs, out)
        return out

    def _written(self, func) -> tuple:
        w = self._writes.get(func)
        if w is None:
            w = self._writes[func] = tuple(
                (i, a.name) for i, a in enumerate(func._schema.arguments)
                if a.alias_info is not None and a.alias_info.is_write)
        return w

    def _forget_written(self, func, args, kwargs) -> None:
        for i, name in self._written(func):
            t = args[i] if i < len(args) else kwargs.get(name)
            for x in tree_flatten(t)[0]:
                if isinstance(x, torch.Tensor):
                    self._forget_storage(x)

    def _propagate(self, func, args, kwargs, out) -> None:
        """Shadow ``out`` when every tensor input's value is known (or does not matter)."""
        flat, spec = tree_flatten((args, kwargs))
        value_free = func._overloadpacket in _VALUE_FREE
        reals = []
        for x in flat:
            if isinstance(x, torch.Tensor):
                s = self.known(x)
                if s is None:
                    if not value_free or x.numel() > LIMIT:
                        self._forget_written(func, args, kwargs)
                        return
                    s = _zeros_like(x)
                reals.append(s)
            else:
                reals.append(x)
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if not outs or any(o.numel() > LIMIT for o in outs):
            self._forget_written(func, args, kwargs)
            return
        ra, rk = tree_unflatten(reals, spec)
        try:
            with _disable_current_modes(), torch.no_grad():
                real = func(*ra, **rk)
                if func._overloadpacket in _UNINITIALISED:
                    real = real.zero_()
        except Exception:  # the op refuses the assumed values: the outputs stay unknown
            self._forget_written(func, args, kwargs)
            return
        for o, r in zip(outs, [r for r in tree_flatten(real)[0] if isinstance(r, torch.Tensor)]):
            if isinstance(o, FakeTensor) and r.shape == o.shape and r.dtype == o.dtype \
                    and self._shadow.get(o) is not r:
                self._set(o, r)

    def fake_like(self, real: torch.Tensor) -> torch.Tensor:
        """A fake tensor shaped like ``real``, shadowed by it (call inside fake mode)."""
        out = torch.empty_strided(real.shape, real.stride(), dtype=real.dtype)
        if self.active:
            self._set(out, real)
        return out

    # --- routing -----------------------------------------------------------------------------
    def route(self, func, indices: torch.Tensor, dim: int, experts: int, k: int) -> None:
        """``indices`` picked (``k`` per row, along ``dim`` of the input) among ``experts``
        values computed from the weights: assumed by the routing rule when first read."""
        shape = tuple(indices.shape)
        tokens = math.prod(shape) // max(k, 1)
        module = self.where()
        options = self.options

        def make():
            loads = expert_loads(options.routing, tokens, k, experts)
            key = (module, str(func), tokens, k, experts)
            use = self.routers.get(key)
            if use is None:
                self.routers[key] = RouterUse(module, str(func._overloadpacket), tokens, k,
                                              experts, loads)
            else:
                use.calls += 1
            idx = assignment(loads, tokens, k)  # (tokens, k)
            logical = shape if dim < len(shape) else (*shape, k)  # picks along ``dim``
            other = [d for i, d in enumerate(logical) if i != dim]
            return idx.reshape(*other, k).movedim(-1, dim).reshape(shape).contiguous()

        self._shadow[indices] = _Lazy(make)
        self._by_storage.setdefault(indices.untyped_storage()._cdata, []).append(
            weakref.ref(indices))


def _zeros_like(t: torch.Tensor) -> torch.Tensor:
    """Real zeros shaped and strided like ``t`` (a stand-in where values do not matter)."""
    with _disable_current_modes():
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).zero_()


def assignment(loads: list[int], tokens: int, k: int) -> torch.Tensor:
    """A (tokens, k) index matrix in which expert e appears ``loads[e]`` times and no token
    picks an expert twice: the experts' runs laid out column by column (token, then slot)."""
    seq = torch.repeat_interleave(torch.arange(len(loads)), torch.tensor(loads, dtype=torch.long))
    return seq.reshape(k, tokens).t().contiguous()


def _assume(t: torch.Tensor, density: float) -> tuple[torch.Tensor, str]:
    """The stated value of a tensor computed from the weights, and the rule's words."""
    n = t.numel()
    if t.dtype == torch.bool:
        k = math.ceil(density * n)
        flat = torch.zeros(n, dtype=torch.bool)
        if k:
            flat[(torch.arange(k) * n) // k] = True
        return flat.reshape(t.shape), f"mask true at {density:g} of its elements"
    if t.dtype.is_floating_point or t.dtype.is_complex:
        return torch.ones(t.shape, dtype=t.dtype), "value read as 1"
    return torch.zeros(t.shape, dtype=t.dtype), "integer read as 0"


# --- data-dependent ops ------------------------------------------------------------------------
def _by_value(v: Values, func, args, kwargs):
    """Run the op for real on the (known or assumed) values; fake outputs of the real shapes."""
    ra, rk = tree_map(lambda x: v.value(x, func) if isinstance(x, torch.Tensor) else x,
                      (args, kwargs))
    with _disable_current_modes(), torch.no_grad():
        try:
            real = func(*ra, **rk)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OpRefused(func, v.where(), f"has a data-dependent result and failed on the "
                            f"values known or assumed for it ({first})", gap=True) from exc
    return tree_map(lambda r: v.fake_like(r) if isinstance(r, torch.Tensor) else r, real)


def _long_indices(v: Values, func, indices):
    """Boolean masks among ``indices`` replaced by the long indices of their true elements."""
    out = []
    for idx in indices:
        if isinstance(idx, torch.Tensor) and idx.dtype in (torch.bool, torch.uint8):
            mask = v.value(idx, func)
            with _disable_current_modes():
                rows = mask.nonzero()  # (n, mask dims)
                cols = [rows[:, j].contiguous() for j in range(rows.shape[1])]
            out.extend(v.fake_like(c) for c in cols)
        else:
            out.append(idx)
    return out


def _index(v: Values, func, args, kwargs):
    args = list(args)
    original = tuple(args)
    args[1] = _long_indices(v, func, args[1])
    out = func(*args, **kwargs)
    if v.active:
        v._propagate(func, original, kwargs, out)
    return out


def _masked_select(v: Values, func, args, kwargs):
    x, mask = args[0], args[1]
    m = v.value(mask, func)
    s = v.known(x) if v.active else None
    if s is not None:
        with _disable_current_modes(), torch.no_grad():
            return v.fake_like(torch.masked_select(s, m))
    n = int(m.expand(torch.broadcast_shapes(x.shape, mask.shape)).count_nonzero())
    return torch.empty((n,), dtype=x.dtype)


_DATA_DEPENDENT_OPS = {aten.index: _index, aten.index_put: _index, aten.index_put_: _index,
                       aten._index_put_impl_: _index, aten.masked_select: _masked_select}


# --- indices picked from unknown values ------------------------------------------------------
def _topk(v: Values, func, args, kwargs, out) -> bool:
    x = args[0]
    if v.known(x) is not None:
        return False
    named = dict(zip(("self", "k", "dim"), args)) | kwargs
    dim = named.get("dim", -1) % max(x.dim(), 1)
    v.route(func, out[1], dim, x.shape[dim] if x.dim() else 1, int(named["k"]))
    return True


def _argmax(v: Values, func, args, kwargs, out) -> bool:
    x = args[0]
    if v.known(x) is not None:
        return False
    named = dict(zip(("self", "dim", "keepdim"), args)) | kwargs
    dim = named.get("dim")
    indices = out if isinstance(out, torch.Tensor) else out[1]
    if dim is None or x.dim() == 0:  # over all elements: one token picking among all
        v.route(func, indices, 0, max(x.numel(), 1), 1)
    elif named.get("keepdim", False):
        v.route(func, indices, dim % x.dim(), x.shape[dim], 1)
    else:  # the picked dim is gone: one pick per remaining element, in order
        v.route(func, indices, indices.dim(), x.shape[dim], 1)
    return True


def _max_dim(v: Values, func, args, kwargs, out) -> bool:
    return func._overloadname == "dim" and _argmax(v, func, args, kwargs, out)


def _sort(v: Values, func, args, kwargs, out) -> bool:
    x = args[0]
    if v.known(x) is not None:
        return False
    named = dict(zip(("self", "dim", "descending"), args)) | kwargs  # sort.stable: kw-only
    dim = named.get("dim", -1) % max(x.dim(), 1)
    indices, shape = out[1], tuple(x.shape)
    module = v.where()

    def make():
        v.bounds.setdefault((module, str(func), "in order"),
                            BoundUse(module, str(func), "values computed from the weights "
                                     "found already in order", x.numel()))
        n = shape[dim] if shape else 1
        view = [1] * len(shape)
        if shape:
            view[dim] = n
        return torch.arange(n).reshape(view).expand(shape).contiguous()

    v._shadow[indices] = _Lazy(make)
    return True


_AFTER = {aten.topk: _topk, aten.argmax: _argmax, aten.argmin: _argmax, aten.max: _max_dim,
          aten.min: _max_dim, aten.sort: _sort}


def assumptions(v: Values, count_for: Callable[[str], int]) -> dict:
    """What the capture assumed, for the analysis document; ``count_for(module)``: how many
    occurrences a traced module stands for (repeated blocks)."""
    routers = [{"module": u.module, "op": u.op, "tokens": u.tokens, "top_k": u.top_k,
                "experts": u.experts, "tokens_per_expert": list(u.tokens_per_expert),
                "busiest_expert_tokens": max(u.tokens_per_expert, default=0),
                "calls": u.calls * count_for(u.module)} for u in v.routers.values()]
    bounds = [{"module": b.module, "op": b.op, "rule": b.rule, "elements": b.elements,
               "calls": b.calls * count_for(b.module)} for b in v.bounds.values()]
    fallbacks = [{"module": m, "op": op, "how": how, "calls": count_for(m)}
                 for (m, op), how in v.fallbacks.items()]
    return {"routing": {"assumption": v.options.routing.spec,
                        "description": v.options.routing.describe(), "routers": routers},
            "mask_density": v.options.mask_density, "bounds": bounds, "fallbacks": fallbacks}
