"""Measured efficiency tables of a GPU profile: matmuls by shape, attention by kernel and shape.

Two tables beside the efficiency curves by op size (``profile.EfficiencyCurve``):

- :class:`ShapeTable`: the achieved fraction of peak of an (m, n, k) matmul ((m, k) @ (k, n)),
  measured on a grid of m, n and k, per dtype (``matmul_shape_efficiency`` in a profile). A
  matmul's rate follows its shape, not only its FLOPs: on an H100 a 4096 x 4096 output reaches
  0.40 of peak at k = 256 and 0.79 at k = 4096 (XLA's measured table), which one curve by FLOPs
  cannot say.
- :class:`AttentionTable`: the achieved fraction of peak of one fused attention kernel
  (``attention_kernels`` in a profile: flash2, flash3, cudnn, ...) by head dim and sequence
  length, for causal and full masks, forward and backward (the published FlashAttention
  benchmarks' axes). FLOPs as archcost counts them (``trace/rules_attention.py``: causal at
  half, backward 2.5x forward), the convention of those benchmarks.

Reading between and beyond the measured sizes (the same rule for every axis of both tables):
piecewise linear in log2 of each size between grid points; above the largest measured size the
edge value (clamped: the measured tables flatten there, e.g. H100 bf16 at 0.75-0.80 of peak from
2048 up); below the smallest, the edge value times sqrt(size / smallest). NB: the square root
sits between the two bounds a shrinking dim can have, constant efficiency (clamping) and
constant time (efficiency proportional to the size, a kernel no faster below one tile); the A100
GEMMs measured below 256 (EleutherAI cookbook sweeps, ``benchmarks/data/``) lie between those
bounds, and ``tests/test_gpu_tables.py`` checks the rule against them.

File format and the one-line errors of malformed tables are here too (``read_shape_tables``,
``read_attention_tables``), beside the rest of the reader in ``profile.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from archcost.hardware.reader import Reader, suggest

__all__ = ["ShapeTable", "AttentionTable", "ALL_DTYPES", "SUB_GRID_EXPONENT", "PHASES", "MASKS",
           "read_shape_tables", "read_attention_tables", "grid_weights"]

SUB_GRID_EXPONENT = 0.5  # below a table's smallest size: edge x (size / smallest) ** this
ALL_DTYPES = "all"  # key of a shape table that holds for every dtype (calibrated profiles)
PHASES = ("forward", "backward")
MASKS = ("full", "causal")
_KERNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def grid_weights(grid_log2: np.ndarray, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, weight of the upper point, factor) of each ``x`` on a grid given in log2:
    linear in log2 between points, clamped above, and ``(x / grid[0]) ** SUB_GRID_EXPONENT``
    as a factor below the grid (1 elsewhere)."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-300)
    lx = np.log2(x)
    below = lx < grid_log2[0]
    factor = np.where(below, np.exp2((lx - grid_log2[0]) * SUB_GRID_EXPONENT), 1.0)
    lx = np.clip(lx, grid_log2[0], grid_log2[-1])
    if len(grid_log2) == 1:
        return np.zeros(lx.shape, dtype=np.int64), np.zeros(lx.shape), factor
    i = np.clip(np.searchsorted(grid_log2, lx, side="right") - 1, 0, len(grid_log2) - 2)
    return i, (lx - grid_log2[i]) / (grid_log2[i + 1] - grid_log2[i]), factor


@dataclass(frozen=True, slots=True)
class ShapeTable:
    """Achieved fraction of peak of an (m, n, k) matmul ((m, k) @ (k, n)), measured on the grid
    ``dims`` (m) x ``n_dims`` x ``k_dims`` (both default to ``dims``): ``values[i][j][l]`` is
    the cell (dims[i], n_dims[j], k_dims[l]).

    Trilinear in log2 of each dim between the cells; beyond the grid, the module's rule. A
    batched matmul (b, m, n, k) reads the cell of (b*m, n, k): the batch adds output tiles as
    rows do (XLA's H100 and B200 tables: b=2 and b=4 cells are within 5 % of the b=1 cell of
    2m and 4m, median 0.99-1.00, p10-p90).
    """

    dims: tuple[float, ...]
    values: tuple[tuple[tuple[float, ...], ...], ...]
    n_dims: tuple[float, ...] | None = None
    k_dims: tuple[float, ...] | None = None
    # the dtype the cells were measured in, where one table serves every dtype (a calibration's):
    # a matmul of another dtype reads it at its same-duration shape (compute._per_shape)
    dtype: str | None = None

    def __post_init__(self) -> None:
        axes = [tuple(float(d) for d in a) for a in (self.dims, self.n_dims or self.dims,
                                                     self.k_dims or self.dims)]
        vals = tuple(tuple(tuple(float(v) for v in row) for row in plane)
                     for plane in self.values)
        # internal invariant: files are validated (with a user-facing message) before this
        if (any(len(a) < 2 or any(d <= 0 for d in a) or any(b <= c for c, b in zip(a, a[1:]))
                for a in axes)
                or len(vals) != len(axes[0])
                or any(len(p) != len(axes[1]) or any(len(r) != len(axes[2]) for r in p)
                       for p in vals)
                or any(not 0 < v <= 1 for p in vals for r in p for v in r)):
            raise ValueError(f"invalid shape table axes={axes!r}")
        object.__setattr__(self, "dims", axes[0])
        object.__setattr__(self, "n_dims", None if self.n_dims is None else axes[1])
        object.__setattr__(self, "k_dims", None if self.k_dims is None else axes[2])
        object.__setattr__(self, "values", vals)

    @property
    def axes(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """The (m, n, k) grids."""
        return self.dims, self.n_dims or self.dims, self.k_dims or self.dims

    def at(self, m, n, k) -> np.ndarray:
        """Efficiency of each (m, n, k) (arrays or numbers, broadcast together)."""
        vals = np.asarray(self.values)
        parts = [grid_weights(np.log2(np.asarray(a)), x) for a, x in zip(self.axes, (m, n, k))]
        (i, wi, fi), (j, wj, fj), (l_, wl, fl) = parts
        out = 0.0
        for di in (0, 1):
            for dj in (0, 1):
                for dl in (0, 1):
                    weight = ((wi if di else 1 - wi) * (wj if dj else 1 - wj)
                              * (wl if dl else 1 - wl))
                    cell = vals[np.minimum(i + di, vals.shape[0] - 1),
                                np.minimum(j + dj, vals.shape[1] - 1),
                                np.minimum(l_ + dl, vals.shape[2] - 1)]
                    out = out + weight * cell
        return np.asarray(out * fi * fj * fl, dtype=np.float64)

    def with_rows(self, rows: ShapeTable) -> ShapeTable:
        """This table with each m plane that ``rows`` measures (its m grid) read from
        ``rows`` instead, at this table's n and k (the warm rows of a calibration over its
        cold table)."""
        n_grid, k_grid = np.meshgrid(self.axes[1], self.axes[2], indexing="ij")
        planes = [rows.at(m, n_grid, k_grid).tolist() if m in rows.dims else plane
                  for m, plane in zip(self.dims, self.values)]
        return replace(self, values=planes)

    def scaled(self, factor: float) -> ShapeTable:
        """The table of a part ``factor`` times as fast: each cell's efficiency is reached by a
        matmul ``factor`` times the FLOPs, each dim scaled by the cube root."""
        s = factor ** (1 / 3)

        def grow(a):
            return None if a is None else tuple(d * s for d in a)

        return replace(self, dims=grow(self.dims), n_dims=grow(self.n_dims),
                       k_dims=grow(self.k_dims))


@dataclass(frozen=True, slots=True)
class AttentionTable:
    """Achieved fraction of peak of one fused attention kernel by head dim and sequence length:
    ``values[phase][mask][i][j]`` at (head_dims[i], seq_lens[j]), phase 0 forward / 1 backward,
    mask 0 full / 1 causal. Bilinear in log2 of head dim and sequence between the cells;
    beyond them, the module's rule."""

    head_dims: tuple[float, ...]
    seq_lens: tuple[float, ...]
    values: tuple[tuple[tuple[tuple[float, ...], ...], ...], ...]  # [phase][mask][d][s]

    def __post_init__(self) -> None:
        hd = tuple(float(d) for d in self.head_dims)
        sl = tuple(float(s) for s in self.seq_lens)
        vals = tuple(tuple(tuple(tuple(float(v) for v in row) for row in grid) for grid in ph)
                     for ph in self.values)
        arr = np.asarray(vals, dtype=np.float64) if vals else np.zeros(0)
        # internal invariant: files are validated (with a user-facing message) before this
        if (any(not a or any(x <= 0 for x in a) or any(b <= c for c, b in zip(a, a[1:]))
                for a in (hd, sl))
                or arr.shape != (len(PHASES), len(MASKS), len(hd), len(sl))
                or not np.all((arr > 0) & (arr <= 1))):
            raise ValueError(f"invalid attention table head_dims={hd!r} seq_lens={sl!r}")
        object.__setattr__(self, "head_dims", hd)
        object.__setattr__(self, "seq_lens", sl)
        object.__setattr__(self, "values", vals)

    def at(self, head_dim, seq, causal, backward) -> np.ndarray:
        """Efficiency of each op (arrays or numbers, broadcast together): ``causal`` and
        ``backward`` are truthy per op."""
        vals = np.asarray(self.values)
        head_dim, seq, causal, backward = np.broadcast_arrays(
            np.asarray(head_dim, dtype=np.float64), np.asarray(seq, dtype=np.float64),
            np.asarray(causal), np.asarray(backward))
        i, wi, fi = grid_weights(np.log2(np.asarray(self.head_dims)), head_dim)
        j, wj, fj = grid_weights(np.log2(np.asarray(self.seq_lens)), seq)
        ph = np.asarray(backward, dtype=bool).astype(np.int64)
        mk = np.asarray(causal, dtype=bool).astype(np.int64)
        last_i, last_j = vals.shape[2] - 1, vals.shape[3] - 1
        out = 0.0
        for di in (0, 1):
            for dj in (0, 1):
                weight = (wi if di else 1 - wi) * (wj if dj else 1 - wj)
                out = out + weight * vals[ph, mk, np.minimum(i + di, last_i),
                                          np.minimum(j + dj, last_j)]
        return np.asarray(out * fi * fj, dtype=np.float64)

    def scaled(self, factor: float) -> AttentionTable:
        """The table of a part ``factor`` times as fast: each cell's efficiency is reached at
        ``factor`` times the FLOPs per (batch, head) slice (s^2 d), the sequence scaled by the
        square root."""
        return replace(self, seq_lens=tuple(s * factor ** 0.5 for s in self.seq_lens))


# --- reading -------------------------------------------------------------------------------------
def _sizes(r: Reader, where: str, v: Any, example: str, least: int = 1) -> tuple[float, ...]:
    if (not isinstance(v, list) or len(v) < least
            or any(isinstance(d, bool) or not isinstance(d, (int, float)) or d <= 0 for d in v)
            or any(b <= a for a, b in zip(v, v[1:]))):
        count = f"{least} or more " if least > 1 else ""
        raise r.fail(where, f"{v!r} must be {count}increasing positive sizes, e.g. {example}")
    return tuple(float(d) for d in v)


def _fraction(r: Reader, where: str, v: Any, cell: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise r.fail(where, f"cell {cell} is {v!r}; efficiency must be in (0, 1]: a fraction "
                     "of peak")
    return float(v)


def _one_shape_table(r: Reader, key: str, raw: Any, dtypes: tuple[str, ...] = ()) -> ShapeTable:
    """One table; ``dtypes`` (the one table of every dtype): its cells' dtype may be named."""
    if not isinstance(raw, dict):
        raise r.fail(key, "must be a mapping {dims: [...], values: [[[...]]]} (or m, n, k "
                     "grids instead of dims): efficiency of an (m, n, k) matmul")
    extra = set(raw) - {"dims", "m", "n", "k", "values"} - ({"dtype"} if dtypes else set())
    if extra:
        raise r.fail(f"{key}.{sorted(map(str, extra))[0]}", "unknown key; use dims (or m, n "
                     "and k) and values" + (", and dtype" if dtypes else ""))
    measured_in = raw.get("dtype")
    if measured_in is not None and measured_in not in dtypes:
        raise r.fail(f"{key}.dtype", f"{measured_in!r} is not a dtype; use one of "
                     f"{', '.join(dtypes)}: the dtype the cells were measured in")
    if "dims" in raw and any(a in raw for a in "mnk"):
        raise r.fail(f"{key}.dims", "give either dims (one grid for m, n and k) or m, n and k, "
                     "not both")
    if "dims" in raw:
        axes = (_sizes(r, f"{key}.dims", raw["dims"], "[64, 256, 1024]", 2),) * 3
    else:
        axes = tuple(_sizes(r, f"{key}.{a}", raw.get(a), "[256, 1024, 4096]", 2) for a in "mnk")
    nm, nn, nk = (len(a) for a in axes)
    vals = raw.get("values")
    if not (isinstance(vals, list) and len(vals) == nm and all(
            isinstance(p, list) and len(p) == nn and all(isinstance(row, list) and len(row) == nk
                                                         for row in p) for p in vals)):
        raise r.fail(f"{key}.values", f"must be a {nm} x {nn} x {nk} nested list (m, then n, "
                     "then k over the grids)")
    cells = tuple(tuple(tuple(_fraction(r, f"{key}.values", v, f"({axes[0][i]:g}, "
                                        f"{axes[1][j]:g}, {axes[2][ll]:g})")
                              for ll, v in enumerate(row)) for j, row in enumerate(p))
                  for i, p in enumerate(vals))
    if "dims" in raw:
        return ShapeTable(axes[0], cells, dtype=measured_in)
    return ShapeTable(axes[0], cells, axes[1], axes[2], dtype=measured_in)


def read_shape_tables(r: Reader, data: dict[str, Any], dtypes: tuple[str, ...],
                      key: str = "matmul_shape_efficiency") -> dict[str, ShapeTable]:
    """``matmul_shape_efficiency`` (or ``key``: its warm rows, in the same form): one table for
    every dtype ({dims, values}, what calibration writes), or a mapping dtype -> table, where a
    dtype may name another's table (``fp16: bf16``: the same tensor-core rate). Empty when
    absent."""
    raw = data.get(key)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise r.fail(key, "must be a mapping {dims: [...], values: [[[...]]]}: efficiency of an "
                     "(m, n, k) matmul on the grid dims^3, or a mapping of dtypes to such tables")
    if set(raw) & {"dims", "values", "m", "n", "k"}:
        return {ALL_DTYPES: _one_shape_table(r, key, raw, dtypes)}
    out: dict[str, ShapeTable] = {}
    aliases = {}
    for dt, table in raw.items():
        if dt not in dtypes:
            hint = suggest(str(dt), dtypes)
            raise r.fail(f"{key}.{dt}", f"unknown dtype; {hint}use {', '.join(dtypes)} (or "
                         "dims and values for one table of every dtype)")
        if isinstance(table, str):
            aliases[dt] = table
        else:
            out[dt] = _one_shape_table(r, f"{key}.{dt}", table)
    for dt, other in aliases.items():
        if other not in out:
            raise r.fail(f"{key}.{dt}", f"names '{other}', which has no table here; name a dtype "
                         f"given a table: {', '.join(out) or 'none'}")
        out[dt] = out[other]
    return out


def _grid(r: Reader, where: str, raw: Any, nd: int, ns: int, hd, sl) -> tuple:
    if not (isinstance(raw, list) and len(raw) == nd
            and all(isinstance(row, list) and len(row) == ns for row in raw)):
        raise r.fail(where, f"must be {nd} rows (one per head dim) of {ns} values (one per "
                     "sequence length)")
    return tuple(tuple(_fraction(r, where, v, f"(head dim {hd[i]:g}, seq {sl[j]:g})")
                       for j, v in enumerate(row)) for i, row in enumerate(raw))


def _one_attention_table(r: Reader, where: str, raw: Any) -> AttentionTable:
    shown = ("{head_dims: [64, 128], seq_lens: [1024, 4096], forward: {full: [[...], [...]], "
             "causal: [...]}, backward: {...}}")
    if not isinstance(raw, dict):
        raise r.fail(where, f"must be a mapping, e.g. {shown}")
    r.check_keys(raw, {"head_dims": "sizes", "seq_lens": "sizes", "forward": "phase",
                       "backward": "phase"}, set(), where + ".",
                 examples={"head_dims": "[64, 128]", "seq_lens": "[1024, 4096]",
                           "forward": "{full: [[...]], causal: [[...]]}",
                           "backward": "{full: [[...]], causal: [[...]]}"})
    hd = _sizes(r, f"{where}.head_dims", raw["head_dims"], "[64, 128, 256]")
    sl = _sizes(r, f"{where}.seq_lens", raw["seq_lens"], "[512, 1024, 2048]")
    phases = []
    for ph in PHASES:
        body = raw[ph]
        at = f"{where}.{ph}"
        if not isinstance(body, dict):
            raise r.fail(at, "must be a mapping of full and causal grids (rows per head dim)")
        r.check_keys(body, {m: "grid" for m in MASKS}, set(), at + ".",
                     examples={m: "[[0.3, 0.5], [0.4, 0.6]]" for m in MASKS})
        phases.append(tuple(_grid(r, f"{at}.{m}", body[m], len(hd), len(sl), hd, sl)
                            for m in MASKS))
    return AttentionTable(hd, sl, tuple(phases))


def read_attention_tables(r: Reader, data: dict[str, Any]) -> dict[str, AttentionTable]:
    """``attention_kernels``: kernel name -> table. Empty when absent."""
    key = "attention_kernels"
    raw = data.get(key)
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise r.fail(key, "must map attention kernel names (flash2, flash3, cudnn, ...) to "
                     "tables by head dim and sequence length")
    out = {}
    for name, table in raw.items():
        if not isinstance(name, str) or not _KERNEL_NAME.match(name):
            raise r.fail(f"{key}.{name}", "a kernel name is lower-case letters, digits, '-' "
                         "and '_', e.g. flash3")
        out[name] = _one_attention_table(r, f"{key}.{name}", table)
    return out
