"""What a trace without data assumes where a model's control flow or shapes depend on values.

A capture runs on fake tensors: the weights hold no numbers, so a router's top-k choice, the
rows a boolean mask selects or a count read with ``.item()`` are unknown. The capture keeps the
values it can know (inputs, constants, ``arange``, what is computed from them alone) and
assumes the rest, by the rules below, each reported in the analysis document:

- **Routing** (``--routing``): the indices a ``topk``/``argmax`` picks over values computed from
  the weights, i.e. a mixture-of-experts router's choices. ``balanced`` (default): every expert
  receives ``tokens x top_k / experts`` token choices, what a router trained with a
  load-balancing loss does on average (Fedus et al. 2021, "Switch Transformers", Sec. 2.2;
  Shazeer et al. 2017, Sec. 4). ``capacity=F``: the busiest expert receives ``F`` times the mean
  (the most a router with capacity factor ``F`` lets through), the others share the rest
  evenly. ``histogram=FILE``: each expert's share as measured (a JSON list of token counts or
  shares per expert, or ``{"tokens_per_expert": [...]}``), applied to every router with that
  many experts. A token never picks one expert twice, so no expert gets more than ``tokens``.
  NB: a dropless implementation (every routed token computed, as in ``transformers``) costs the
  same FLOPs under any routing; the routing decides each expert's share, the busiest expert's
  load and which experts run at all.
- **Masks and counts** computed from the weights (``--mask-density``): a boolean tensor is true
  for that share of its elements, spread evenly (default 1.0: every element, the upper bound of
  what ``nonzero`` or ``x[mask]`` can select); integers read as 0 (a valid index), floating
  values as 1. A ``sort`` of such values finds them already in order.
- **Watchdog** (``--trace-timeout``): a capture with no progress for that many seconds stops
  (``archcost.trace.watchdog``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from archcost.errors import ConfigError
from archcost.trace.watchdog import DEFAULT_LIMIT_S

__all__ = ["CaptureOptions", "Routing", "expert_loads", "groups_reached", "parse_routing",
           "routing_file"]


@dataclass(frozen=True)
class Routing:
    """A routing assumption: ``kind`` is balanced, capacity or histogram."""

    kind: str = "balanced"
    factor: float = 1.0  # capacity: the busiest expert's load over the mean
    shares: tuple[float, ...] = ()  # histogram: each expert's share (sums to 1)
    source: str = ""  # histogram: the file it came from

    @property
    def spec(self) -> str:
        if self.kind == "capacity":
            return f"capacity={self.factor:g}"
        if self.kind == "histogram":
            return f"histogram={self.source}"
        return "balanced"

    def describe(self) -> str:
        if self.kind == "capacity":
            return (f"capacity factor {self.factor:g}: the busiest expert gets {self.factor:g}x "
                    "the mean, the others share the rest evenly")
        if self.kind == "histogram":
            return (f"measured histogram ({self.source}, {len(self.shares)} experts): each "
                    "expert gets its measured share")
        return "balanced: every expert gets tokens x top_k / experts"


def routing_file(text: str) -> str | None:
    """The file ``histogram=FILE`` names (``None`` for the other forms), for the checks that
    no output overwrites what a command reads."""
    key, sep, value = text.strip().partition("=")
    return value.strip() or None if sep and key.strip().lower() == "histogram" else None


def parse_routing(text: str) -> Routing:
    """``balanced``, ``capacity=F`` (F >= 1) or ``histogram=FILE``."""
    key, sep, value = text.strip().partition("=")
    key = key.strip().lower()
    if key == "balanced" and not sep:
        return Routing()
    if key == "capacity" and sep:
        try:
            factor = float(value)
        except ValueError:
            factor = math.nan
        if not math.isfinite(factor) or factor < 1:
            raise ConfigError(f"--routing {text!r}: the capacity factor is a number >= 1 "
                              "(the busiest expert's load over the mean), e.g. capacity=1.25")
        return Routing("capacity", factor=factor)
    if key == "histogram" and sep and value.strip():
        return Routing("histogram", shares=_read_histogram(Path(value.strip()), text),
                       source=value.strip())
    raise ConfigError(f"--routing {text!r} is unknown; use balanced, capacity=F (e.g. "
                      "capacity=1.25) or histogram=FILE (a JSON list of tokens per expert)")


def _read_histogram(path: Path, text: str) -> tuple[float, ...]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--routing {text!r}: cannot read {path}: {exc.strerror}; give a JSON "
                          "file holding a list of tokens per expert") from None
    except ValueError as exc:
        raise ConfigError(f"--routing {text!r}: {path} is not JSON ({exc}); give a list of "
                          "tokens per expert, e.g. [120, 80, 100, 100]") from None
    if isinstance(data, dict):
        data = data.get("tokens_per_expert")
    ok = (isinstance(data, list) and len(data) >= 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
        for x in data) and sum(data) > 0)
    if not ok:
        raise ConfigError(f"--routing {text!r}: {path} must hold a list of at least two "
                          "non-negative numbers, not all zero (tokens or shares per expert), or "
                          '{"tokens_per_expert": [...]}')
    total = float(sum(data))
    return tuple(float(x) / total for x in data)


def expert_loads(routing: Routing, tokens: int, top_k: int, experts: int) -> list[int]:
    """Token choices each of ``experts`` receives from ``tokens`` tokens picking ``top_k``.

    The loads sum to ``tokens * top_k`` and none exceeds ``tokens`` (a token picks an expert at
    most once). A histogram of another length than ``experts`` is refused in one line.
    """
    if routing.kind == "histogram" and experts > 0 and len(routing.shares) != experts:
        raise ConfigError(f"--routing histogram={routing.source}: {len(routing.shares)} counts "
                          f"for a router over {experts} experts; give one count per expert")
    total = tokens * top_k
    if experts <= 0 or total == 0:
        return [0] * max(experts, 0)
    if routing.kind == "histogram" and len(routing.shares) == experts:
        want = [s * total for s in routing.shares]
    elif routing.kind == "capacity" and experts > 1:
        busiest = min(float(tokens), routing.factor * total / experts)
        rest = (total - busiest) / (experts - 1)
        want = [busiest] + [rest] * (experts - 1)
    else:
        want = [total / experts] * experts
    return _round_capped(want, total, tokens)


def groups_reached(routing: Routing, rows: float, groups: int) -> int:
    """How many of ``groups`` experts ``rows`` token choices reach under ``routing`` (the
    experts :func:`expert_loads` gives a choice): balanced, ``min(groups, rows)``; a
    histogram, at most its experts with a share. A grouped GEMM reads the weights of these
    alone, so a decode step's expert weights grow with its batch until every expert is
    reached (Mixtral, top-2 of 8: a quarter of them at batch 1, all from batch 4)."""
    if groups <= 0 or rows <= 0:
        return 0
    if routing.kind == "histogram" and len(routing.shares) != groups:
        return min(groups, math.ceil(rows))  # another router's histogram: balanced here
    n = math.ceil(rows - 1e-9)
    return sum(1 for x in expert_loads(routing, n, 1, groups) if x > 0)


def _round_capped(want: list[float], total: int, cap: int) -> list[int]:
    """Whole numbers near ``want`` summing to ``total``, each at most ``cap`` (excess moves to
    the others in proportion; remainders go to the largest fractions, then to the first)."""
    want = list(want)
    for _ in range(len(want)):
        over = sum(w - cap for w in want if w > cap)
        if over <= 1e-9:
            break
        free = [i for i, w in enumerate(want) if w < cap]
        room = sum(cap - want[i] for i in free)
        want = [min(w, float(cap)) for w in want]
        for i in free:
            want[i] += over * (cap - want[i]) / room if room else 0.0
    out = [min(cap, math.floor(w + 1e-9)) for w in want]
    short = total - sum(out)
    order = sorted(range(len(want)), key=lambda i: (-(want[i] - out[i]), i))
    for i in order:
        if short <= 0:
            break
        if out[i] < cap:
            out[i] += 1
            short -= 1
    return out


@dataclass(frozen=True)
class CaptureOptions:
    """The assumptions and limits of one capture (defaults: README, "How it counts")."""

    routing: Routing = field(default_factory=Routing)
    mask_density: float = 1.0
    trace_timeout_s: float = DEFAULT_LIMIT_S

    def __post_init__(self):
        if not 0 <= self.mask_density <= 1:
            raise ConfigError(f"--mask-density {self.mask_density}: give a share in [0, 1], "
                              "e.g. 0.5")
        if not self.trace_timeout_s > 0:
            raise ConfigError(f"--trace-timeout {self.trace_timeout_s}: give a number of "
                              "seconds > 0, e.g. 120")
