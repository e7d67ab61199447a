"""Repeated blocks: trace one of many identical layers and count it many times.

Children of an ``nn.ModuleList`` / ``nn.Sequential`` form a group when their module trees agree:
the class of every submodule, the names, shapes, dtypes and ``requires_grad`` of parameters and
buffers, and the non-tensor settings of every submodule, its instance attributes that are
ints, bools, strings, None, floats, or tuples / lists of these (a window shift, a convolution's
stride, a sliding window, an ``is_causal`` flag, ``training``), since code branches on them and
runs other ops. Two exceptions, each because it does not change which ops run or on what shapes:

- an identity label: an int attribute whose values number the members, equal to each member's
  position in its container plus one constant across the group (transformers' ``layer_idx``),
  is not a setting. Without this rule every decoder layer of a transformers model would be a
  group of its own. NB: in a group of two, an int setting that happens to differ by the
  members' distance (a shift of 1 between neighbours) reads as a label;
- a float is compared by its sign only (negative, zero, positive): a rate or scale changes
  values, not ops, except where it is zero (``drop_prob == 0.0`` makes stochastic depth a
  no-op, ``p=0`` dropout runs nothing), the test such code makes. Stochastic depth with
  linearly increasing rates keeps one group for every block whose rate is above zero; the first
  block (rate 0) is its own. Measured on Swin-B (224x224, batch 2, 24 blocks, rates 0 to 0.1):
  the capture takes 6.8 s with the two groups of 9 this gives in its third stage, 11.1 s with
  every block traced, which is what comparing rates exactly would give (no two are equal).

Members whose settings differ are split into sub-groups by the settings they differ in (Swin's
blocks with and without a window shift; Gemma's sliding and global layers); a sub-group of one
is traced in full. A setting a forward changes as it runs is read as built: Swin sets a shift
to 0 where the window covers the whole map (Swin-B's last stage), so blocks built with shifts 0
and 3 that run alike are traced each, which costs time, not fidelity. Recomputation and
low-precision linears wrap every block alike in class and parameter and buffer shapes
(``RepeatTracker.blocks``), grouped or not.

The first member of a group is the representative and is traced. Every later member whose call
has the same input signature (shapes, dtypes and non-tensor values of its arguments) as the
representative's first call returns its first tensor input unchanged instead of running,
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

__all__ = ["RepeatTracker", "RepeatGroup", "split_by_settings"]


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
    block: str = ""  # first member of the block it splits (alike in class and shapes)

    def compute_factor(self) -> int:
        if self.rep_calls == 0:
            return 1
        return (self.rep_calls + self.skipped) // self.rep_calls


def _module_sig(mod: nn.Module):
    """Class and parameter and buffer shapes: children alike in these are one block."""
    params = tuple(
        (n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in mod.named_parameters()
    )
    bufs = tuple((n, tuple(b.shape), b.dtype) for n, b in mod.named_buffers())
    return (type(mod).__module__, type(mod).__qualname__, params, bufs)


def _structure(mod: nn.Module):
    """The class of every submodule and the names of its settings."""
    return tuple((n, type(m).__module__, type(m).__qualname__, tuple(sorted(_settings(m))))
                 for n, m in mod.named_modules())


_NOT_A_SETTING = object()


def _setting(v):
    """``v`` as compared between members (floats by sign), or ``_NOT_A_SETTING``."""
    if v is None or isinstance(v, (bool, int, str)):
        return (type(v).__name__, v)  # a type tag: True and 1 are different settings
    if isinstance(v, float):
        return ("float", "nan" if v != v else (v > 0) - (v < 0))
    if isinstance(v, (tuple, list)):
        items = tuple(_setting(x) for x in v)
        return _NOT_A_SETTING if any(x is _NOT_A_SETTING for x in items) else ("seq", items)
    return _NOT_A_SETTING


def _settings(mod: nn.Module) -> dict[str, Any]:
    out = {}
    for name, v in vars(mod).items():
        s = _setting(v)
        if s is not _NOT_A_SETTING:
            out[name] = s
    return out


def _tree_settings(mod: nn.Module) -> dict[tuple[str, str], Any]:
    return {(path, name): s for path, m in mod.named_modules() for name, s in _settings(m).items()}


def _is_label(values: list[tuple[int, Any]]) -> bool:
    """(position, setting) of every member: an int equal to the position plus one constant."""
    if any(s[0] != "int" for _, s in values):
        return False
    return len({s[1] - pos for pos, s in values}) == 1


def split_by_settings(members: list[tuple[int, str, nn.Module]]) -> list[list[str]]:
    """Members (position in the container, path, module) of one structure, split into groups
    that agree in every setting but identity labels (see the module docstring)."""
    settings = [_tree_settings(m) for _, _, m in members]
    deciding = [
        key for key in settings[0]
        if len({s[key] for s in settings}) > 1
        and not _is_label([(pos, s[key]) for (pos, _, _), s in zip(members, settings)])
    ]
    groups: dict[tuple, list[str]] = {}
    for (_, path, _), s in zip(members, settings):
        groups.setdefault(tuple(s[key] for key in deciding), []).append(path)
    return list(groups.values())


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

    def __init__(self, blocks: list[RepeatGroup], groups: list[RepeatGroup],
                 dedupe: bool = True, call_block=None, layers: tuple[str, ...] = ()):
        self.dedupe = dedupe
        self.blocks = blocks  # the repeated blocks (recomputation wraps each of them)
        # the model's layers: every child of a container of blocks that is of a block's class,
        # repeated or not (DeepSeek-V2-Lite's one dense layer before its MoE layers), and the
        # children of a module list of one class (a model of one layer)
        self.layers = tuple(layers) or tuple(m for b in blocks for m in b.members)
        self.groups = groups if dedupe else []  # the groups whose cost is carried by one member
        self._by_rep = {g.rep: g for g in self.groups}
        self._group_of_member = {m: g for g in self.groups for m in g.members}
        self._frozen = False
        self.skipped_paths: list[str] = []  # each skipped member call, by the member's path
        self.call_block = call_block or (lambda orig, args, kwargs, path: orig(*args, **kwargs))

    @classmethod
    def empty(cls) -> RepeatTracker:
        return cls([], [])

    @classmethod
    def from_model(cls, model: nn.Module, dedupe: bool = True, call_block=None) -> RepeatTracker:
        """Blocks: children of a container alike in class and parameter and buffer shapes;
        groups: blocks alike in every setting too (the module docstring)."""
        blocks: list[RepeatGroup] = []
        groups: list[RepeatGroup] = []
        layers: list[str] = []
        inside_member: list[str] = []
        modules = dict(model.named_modules())
        for path, mod in modules.items():
            if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
                continue
            if any(path.startswith(m + ".") for m in inside_member):
                continue  # within a member that will be skipped anyway
            by_sig: dict[Any, list[tuple[int, str, nn.Module]]] = {}
            for pos, (name, child) in enumerate(mod.named_children()):
                child_path = f"{path}.{name}" if path else name
                if sum(1 for _ in child.parameters()) == 0:
                    continue
                by_sig.setdefault(_module_sig(child), []).append((pos, child_path, child))
            # a list of one kind of layer (of one member, or of members that differ in shape:
            # DeepSeek's dense and MoE decoder layers), or a block's kind among others
            kinds = {sig[:2] for sig in by_sig}
            classes = kinds if len(kinds) == 1 and isinstance(mod, nn.ModuleList) else {
                sig[:2] for sig, members in by_sig.items() if len(members) > 1}
            layers += [p for sig, members in by_sig.items() if sig[:2] in classes
                       for _, p, _ in members if not any(p.startswith(q + ".") for q in layers)]
            for sig, members in by_sig.items():
                if len(members) < 2:
                    continue
                blocks.append(RepeatGroup(members[0][1], sig[1], [p for _, p, _ in members]))
                by_structure: dict[Any, list[tuple[int, str, nn.Module]]] = {}
                for m in members:
                    by_structure.setdefault(_structure(m[2]), []).append(m)
                for alike in by_structure.values():
                    for sub in split_by_settings(alike) if len(alike) > 1 else ():
                        if len(sub) > 1:
                            groups.append(RepeatGroup(sub[0], sig[1], sub, block=members[0][1]))
                            inside_member.extend(sub[1:])
        return cls(blocks, groups, dedupe, call_block, layers=tuple(layers))

    def install(self, model: nn.Module) -> list[_Restore]:
        modules = dict(model.named_modules())
        handles = []
        for b in self.blocks:
            for path in b.members:
                mod = modules[path]
                mod.forward = self._wrap(self._group_of_member.get(path), path, mod.forward)
                handles.append(_Restore(mod))
        return handles

    def _wrap(self, g: RepeatGroup | None, path: str, orig):
        call = self.call_block

        if g is None:  # not deduped: traced in full
            return lambda *args, **kwargs: call(orig, args, kwargs, path)
        is_rep = path == g.rep

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
                self.skipped_paths.append(path)
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

    def counted_calls(self, calls: list[tuple[str, int]]) -> tuple[tuple[str, int, int], ...]:
        """The module calls a run of every block makes, from ``calls`` (path, index of the
        next record) as traced: a skipped member's own call dropped (its representative's
        calls stand for it), each call counted as its records are (``count_for``)."""
        skipped: dict[str, int] = {}
        for path in self.skipped_paths:
            skipped[path] = skipped.get(path, 0) + 1
        out = []
        for path, index in calls:
            if skipped.get(path, 0) > 0:
                skipped[path] -= 1
                continue
            out.append((path, index, self.count_for(path)))
        return tuple(out)

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
                "block": g.block or g.rep,  # the first member of its block (same shapes)
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
