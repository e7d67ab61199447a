"""Repeated blocks: trace one of many identical layers and count it many times.

Children of an ``nn.ModuleList`` / ``nn.Sequential`` that share a class and parameter/buffer
shapes form a group. The first member is the representative and is traced. Every later member
whose call has the same input signature (shapes, dtypes and non-tensor values of its arguments)
as the representative's first call returns its first tensor input unchanged instead of running,
which is exact for blocks that map a tensor to a tensor of the same shape (transformer layers,
residual stages). Its cost is then carried by the representative's records through
``OpRecord.count``. A member whose inputs differ, or a group whose output is not shaped like its
input, is traced in full.

Saved activations: a storage the representative saves is counted once per instance when each
instance has its own (made inside the block, or its input), and once in all when every instance
reads the same one, made outside the block (``owner_of_saved``), as a run of every block saves it;
made by another repeated block (an encoder's last layer), it is that block's last output: once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["RepeatTracker", "RepeatGroup"]


@dataclass
class RepeatGroup:
    rep: str
    cls: str
    members: list[str]
    rep_sig: Any = None
    identity_ok: bool = False
    rep_calls: int = 0
    skipped: int = 0
    traced_in_full: list[str] = field(default_factory=list)
    factor: int = 1
    flow: tuple[int | None, int | None] = (None, None)  # storages of the rep's input, output

    def compute_factor(self) -> int:
        if self.rep_calls == 0:
            return 1
        return (self.rep_calls + self.skipped) // self.rep_calls


def _module_sig(mod: nn.Module):
    params = tuple(
        (n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in mod.named_parameters()
    )
    bufs = tuple((n, tuple(b.shape), b.dtype) for n, b in mod.named_buffers())
    return (type(mod).__module__, type(mod).__qualname__, params, bufs)


def _input_sig(args, kwargs):
    def one(x):
        if isinstance(x, torch.Tensor):
            return ("T", tuple(x.shape), x.dtype, x.requires_grad)
        if isinstance(x, (list, tuple)):
            return tuple(one(y) for y in x)
        if isinstance(x, dict):
            return tuple(sorted((k, one(v)) for k, v in x.items()))
        if isinstance(x, (int, float, bool, str, type(None))):
            return x
        return ("obj", id(x))

    return (one(tuple(args)), one(dict(kwargs)))


def _first_tensor(args, kwargs):
    for x in list(args) + list(kwargs.values()):
        if isinstance(x, torch.Tensor):
            return x
    return None


class _Restore:
    def __init__(self, mod: nn.Module):
        self.mod = mod

    def remove(self) -> None:
        self.mod.__dict__.pop("forward", None)


class RepeatTracker:
    """Finds repeated groups in a model and carries their multiplicities."""

    def __init__(self, groups: list[RepeatGroup], dedupe: bool = True, call_block=None):
        self.dedupe = dedupe
        self.blocks = groups  # the repeated blocks (recomputation wraps each of them)
        self.groups = groups if dedupe else []  # the groups whose cost is carried by one member
        self._by_rep = {g.rep: g for g in self.groups}
        self._frozen = False
        self.call_block = call_block or (lambda orig, args, kwargs, path: orig(*args, **kwargs))

    @classmethod
    def empty(cls) -> RepeatTracker:
        return cls([])

    @classmethod
    def from_model(cls, model: nn.Module, dedupe: bool = True, call_block=None) -> RepeatTracker:
        groups: list[RepeatGroup] = []
        inside_member: list[str] = []
        for path, mod in model.named_modules():
            if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
                continue
            if any(path.startswith(m + ".") for m in inside_member):
                continue  # within a member that will be skipped anyway
            by_sig: dict[Any, list[str]] = {}
            for name, child in mod.named_children():
                child_path = f"{path}.{name}" if path else name
                if sum(1 for _ in child.parameters()) == 0:
                    continue
                by_sig.setdefault(_module_sig(child), []).append(child_path)
            for sig, members in by_sig.items():
                if len(members) > 1:
                    groups.append(RepeatGroup(members[0], sig[1], members))
                    inside_member.extend(members[1:])
        return cls(groups, dedupe, call_block)

    def install(self, model: nn.Module) -> list[_Restore]:
        modules = dict(model.named_modules())
        handles = []
        for g in self.blocks:
            for path in g.members:
                mod = modules[path]
                mod.forward = self._wrap(g, path, mod.forward)
                handles.append(_Restore(mod))
        return handles

    def _wrap(self, g: RepeatGroup, path: str, orig):
        is_rep = path == g.rep
        call = self.call_block

        if not self.dedupe:
            return lambda *args, **kwargs: call(orig, args, kwargs, path)

        def forward(*args, **kwargs):
            if self._frozen:  # recomputation during backward: run as is, counts are fixed
                return orig(*args, **kwargs)
            sig = _input_sig(args, kwargs)
            if is_rep:
                out = call(orig, args, kwargs, path)
                if g.rep_sig is None:
                    g.rep_sig = sig
                    g.identity_ok = _same_shape_out(args, kwargs, out)
                    g.rep_out = out
                    g.flow = (_storage(_first_tensor(args, kwargs)),
                              _storage(_first_tensor((out,) if isinstance(out, torch.Tensor)
                                                     else tuple(out or ()), {})))
                g.rep_calls += 1
                return out
            if g.identity_ok and sig == g.rep_sig:
                g.skipped += 1
                x = _first_tensor(args, kwargs)
                out = g.rep_out
                if isinstance(out, torch.Tensor):
                    return x
                return (x, *tuple(out)[1:])
            g.traced_in_full.append(path)
            return call(orig, args, kwargs, path)

        return forward

    def freeze(self) -> None:
        """Forward is over: fix each group's multiplicity."""
        self._frozen = True
        for g in self.groups:
            g.factor = g.compute_factor()
            g.__dict__.pop("rep_out", None)

    def group_of(self, module: str) -> str:
        """Path of the innermost representative that owns ``module`` ('' if none)."""
        best = ""
        for rep in self._by_rep:
            if (module == rep or module.startswith(rep + ".")) and len(rep) > len(best):
                best = rep
        return best

    def count_for(self, module: str) -> int:
        n = 1
        for rep, g in self._by_rep.items():
            if module == rep or module.startswith(rep + "."):
                n *= g.factor
        return n

    def finalize(self, records) -> None:
        if not self.groups:
            return
        cache: dict[str, int] = {}
        for rec in records:
            c = cache.get(rec.module)
            if c is None:
                c = cache[rec.module] = self.count_for(rec.module)
            rec.count = c

    def rescale_saved(self, saved: dict[str, int]) -> dict[str, int]:
        return {m: b * self.count_for(m) for m, b in saved.items()}

    def owner_of_saved(self, saver: str, storage: int, producer: str | None,
                       saved_by: dict[str, set[int]]) -> str:
        """The module whose count a saved storage takes: the saver's, unless every instance of
        the saver's block reads the same storage, made outside the block (an encoder output,
        RoPE tables, a mask: then the producer's, '' for an input). The block's own input is
        each instance's own, except when the block also saves its output, which the next
        instance saves as its input: then the first instance's input is the one more.
        ``saved_by``: the storages each representative's block saves."""
        rep = self.group_of(saver)
        if not rep or (producer is not None
                       and (producer == rep or producer.startswith(rep + "."))):
            return saver
        g = self._by_rep[rep]
        flow_in, flow_out = g.flow
        if storage == flow_in and flow_out not in saved_by.get(rep, ()):
            return saver
        return self._outside_other_blocks(producer or "", saver)

    def _outside_other_blocks(self, path: str, saver: str) -> str:
        """``path``, or its nearest ancestor outside every representative that does not hold
        ``saver``: what the instances read of another repeated block is one tensor, its last
        instance's output (an encoder's output read by every decoder layer), counted once."""
        def within(p: str, rep: str) -> bool:
            return p == rep or p.startswith(rep + ".")

        while path and any(within(path, r) and not within(saver, r) for r in self._by_rep):
            path = path.rpartition(".")[0]
        return path

    def summary(self) -> dict[str, dict[str, Any]]:
        return {
            g.rep: {
                "class": g.cls,
                "members": len(g.members),
                "member_paths": list(g.members),
                "count": g.factor,
                "traced_in_full": list(g.traced_in_full),
            }
            for g in self.groups
        }

    def describe(self) -> str:
        parts = []
        for g in self.groups:
            full = f", {len(g.traced_in_full)} traced in full" if g.traced_in_full else ""
            parts.append(f"{g.rep} ({g.cls}) traced once, counted x{g.factor}{full}")
        return "repeated blocks: " + "; ".join(parts)


def _same_shape_out(args, kwargs, out) -> bool:
    x = _first_tensor(args, kwargs)
    if x is None:
        return False
    first = out if isinstance(out, torch.Tensor) else None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        first = out[0]
    return (
        first is not None
        and tuple(first.shape) == tuple(x.shape)
        and first.dtype == x.dtype
        and (isinstance(out, torch.Tensor) or isinstance(out, tuple))
    )


def _storage(t) -> int | None:
    if not isinstance(t, torch.Tensor):
        return None
    try:
        return t.untyped_storage()._cdata
    except Exception:  # storage-less tensors
        return None
