"""``archcost calibrate``: the attention kernels of this machine timed into ``attention_kernels``.

Each SDPA backend PyTorch can run here (cuda: flash = FlashAttention-2 -> ``flash2``,
efficient (memory-efficient) -> ``efficient``, cuDNN -> ``cudnn``; cpu: ``math``, the
composite path of matmuls and softmax, and ``cpu-flash``, the fused CPU kernel) over a grid of
head dims and sequence lengths, causal and full mask, forward and backward: the layout of the
bundled tables (``hardware/tables.py``), so the engine reads a calibrated profile's kernels as
it reads the published ones. Shapes follow the FlashAttention benchmarks: batch x sequence and
heads x head dim held constant (``attention_table_tokens``, ``attention_table_hidden``).

Timing is calibrate's (``time_calls``: warm-up, batched repetitions interleaved, median); a
backward is ``torch.autograd.grad`` of the forward's output, graph retained, so it times the
backward kernels alone. A cell's efficiency is FLOPs (archcost's rule: causal at half, backward
2.5x forward) / (median less one kernel launch) / the dtype's measured peak, within (0, 1]. A
kernel is written only when every cell of it ran; one that raises (a backend this build or
device lacks) is recorded as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archcost.hardware.fit import kernel_seconds, sdpa_flops

__all__ = ["BACKENDS", "table_cells", "measure_attention_tables", "fit_attention_tables"]

# kernel name in the profile -> torch.nn.attention.SDPBackend member (a grid names the kernels
# of its device: attention_table_kernels)
BACKENDS = {"flash2": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
            "cudnn": "CUDNN_ATTENTION", "math": "MATH", "cpu-flash": "FLASH_ATTENTION"}
PHASES = ("forward", "backward")


def table_cells(grid) -> list[tuple[int, int, int, int, bool]]:
    """(batch, heads, seq, head dim, causal) of every cell of ``grid``'s attention tables."""
    out = []
    for d in grid.attention_table_head_dims:
        for s in grid.attention_table_seqs:
            for causal in (False, True):
                out.append((max(1, grid.attention_table_tokens // s),
                            max(1, grid.attention_table_hidden // d), s, d, causal))
    return out


def _calls(device: str, dtype, cell) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(forward, backward) of one cell on fresh random operands."""
    import torch
    import torch.nn.functional as F

    b, h, s, d, causal = cell
    q, k, v = (torch.randn(b, h, s, d, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    grad = torch.randn_like(out)

    def forward():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def backward():
        return torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)

    return forward, backward


def measure_attention_tables(m, device: str, grid, time_calls, sync, progress, point) -> None:
    """Time every cell of every kernel of ``grid`` on ``device`` into ``m.attention_table``
    (Points made by ``point(params, flops, timed)``) and its skips into ``m.skipped``."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cells = table_cells(grid)
    if not cells:
        return
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        grid.attention_dtype]
    for kernel in grid.attention_table_kernels:
        member = BACKENDS[kernel]
        backend = getattr(SDPBackend, member)
        with sdpa_kernel(backend):
            try:
                fns = [f for cell in cells for f in _calls(device, tdt, cell)]
                for f in fns[:2]:
                    f()
                sync()
            except RuntimeError as exc:
                reason = " ".join(str(exc).split())[:200]
                m.skipped.append({"bench": "attention_table", "kernel": kernel,
                                  "reason": f"the {member} backend does not run here: {reason}"})
                for _ in range(len(cells) * len(PHASES)):
                    progress(f"attention {kernel} (skipped)")
                continue
            timed = time_calls(fns, sync, grid)
        for i, cell in enumerate(cells):
            b, h, s, d, causal = cell
            for j, phase in enumerate(PHASES):
                t = timed[2 * i + j]
                params = {"kernel": kernel, "phase": phase, "head_dim": d, "seq": s,
                          "causal": causal, "batch": b, "heads": h}
                flops = sdpa_flops(b, h, s, s, d, d, causal) * (5 if j else 2) // 2
                if t.samples is None:
                    m.skipped.append({"bench": "attention_table", **params,
                                      "reason": f"one call takes over {grid.max_call_s} s"})
                else:
                    m.attention_table.append(point(params, flops, t))
                progress(f"attention {kernel} {phase} d={d} s={s}")


def fit_attention_tables(points, launch_s: float, peak: float, head_dims, seqs
                         ) -> dict[str, dict[str, Any]]:
    """kernel -> {head_dims, seq_lens, values[phase][mask][d][s]}: efficiency of each cell
    (FLOPs / (median less ``launch_s``) / ``peak``, within (1e-4, 1], 4 significant digits),
    for the kernels whose every cell was timed."""
    by_kernel: dict[str, dict] = {}
    for p in points:
        q = p.params
        eff = p.size / kernel_seconds(p.time.median, launch_s) / peak
        by_kernel.setdefault(q["kernel"], {})[
            (q["phase"], bool(q["causal"]), q["head_dim"], q["seq"])] = min(1.0, max(1e-4, eff))
    out = {}
    for kernel, cells in by_kernel.items():
        try:
            values = [[[[float(f"{cells[(ph, causal, d, s)]:.4g}") for s in seqs] for d in head_dims]
                       for causal in (False, True)] for ph in PHASES]
        except KeyError:
            continue  # a cell was skipped: no table for this kernel
        out[kernel] = {"head_dims": list(head_dims), "seq_lens": list(seqs), "values": values}
    return out
