"""Tensor and pipeline parallelism of a validation run.

- The ranks form a device mesh ``("pp", "dp", "tp")``, tensor parallel innermost (the plan's
  default placement); a run with one parallel dimension has a one-dimensional mesh.
- Tensor parallel: the model file's ``tp_plan(model, sequence_parallel)`` (module name ->
  ``ParallelStyle``) applied with DTensor's ``parallelize_module`` on the ``tp`` mesh dimension.
- Pipeline parallel: the model file's ``pipeline_stage(model, layers, first, last)`` gives the
  module this rank runs (the blocks of its stage, as the estimate partitioned them, with the
  embedding on the first stage and the head on the last), wrapped in a ``PipelineStage`` and run
  by ``ScheduleGPipe`` or ``Schedule1F1B`` over the step's micro-batches. The schedule does not
  scale gradients, so a step accumulates micro-batch gradients as the one-process run does.

``check_hooks`` runs the same hooks on a meta-device model before anything is launched, so a
model file that cannot be split is refused with one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from archcost.errors import ConfigError

__all__ = ["stage_layers", "require_hooks", "check_hooks", "build_mesh", "mesh_coordinates", "apply_tp",
           "reduce_partial_grads", "build_pipeline", "TP_EXAMPLE"]

TP_EXAMPLE = "see models/llama.py"


def stage_layers(counts: list[int], stage: int) -> list[int]:
    """Block indices of pipeline stage ``stage`` for ``counts`` blocks per stage."""
    start = sum(counts[:stage])
    return list(range(start, start + counts[stage]))


def require_hooks(spec, tp: bool, pp: bool) -> None:
    """ConfigError when the model file lacks the hook a tensor- (``tp``) or pipeline-parallel
    (``pp``) run needs."""
    if tp and spec.tp_plan_fn is None:
        raise ConfigError(f"model {spec.path.name} defines no tp_plan(model); tensor-parallel "
                          f"validation needs one: {TP_EXAMPLE}")
    if pp and spec.pipeline_stage_fn is None:
        raise ConfigError(f"model {spec.path.name} defines no pipeline_stage(model, layers, "
                          f"first, last); pipeline-parallel validation needs one: {TP_EXAMPLE}")


def tp_plan(spec, model: nn.Module, sequence_parallel: bool) -> dict[str, Any]:
    """The model file's ``parallelize_module`` plan; ConfigError when it has none."""
    require_hooks(spec, tp=True, pp=False)
    if sequence_parallel:
        if "sequence_parallel" not in inspect.signature(spec.tp_plan_fn).parameters:
            raise ConfigError(f"model {spec.path.name}: tp_plan(model) takes no "
                              "sequence_parallel argument, which sp=1 needs: "
                              f"{TP_EXAMPLE}, or use sp=0")
        return spec.tp_plan_fn(model, sequence_parallel=True)
    return spec.tp_plan_fn(model)


def pipeline_stage(spec, model: nn.Module, counts: list[int], stage: int) -> nn.Module:
    """This rank's pipeline stage from the model file's ``pipeline_stage`` hook."""
    require_hooks(spec, tp=False, pp=True)
    module = spec.pipeline_stage_fn(model, stage_layers(counts, stage), stage == 0,
                                    stage == len(counts) - 1)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model {spec.path.name}: pipeline_stage() returned "
                          f"{type(module).__name__}, not an nn.Module; return the stage module")
    return module


def check_hooks(spec, cfg) -> None:
    """Refuse, before launching, a model file whose hooks the plan needs are missing or fail:
    the model is built on the meta device and every hook called as the ranks will call it."""
    if cfg.tp == 1 and cfg.pp == 1:
        return
    with torch.device("meta"):
        model = spec.build(cfg.mbs, cfg.seq_len)
    try:
        if cfg.tp > 1:
            plan = tp_plan(spec, model, bool(cfg.sp))
            names = {n for n, _ in model.named_modules()}
            missing = [k for k in plan if "*" not in k and k not in names]
            if missing:
                raise ConfigError(f"model {spec.path.name}: tp_plan names {missing[0]!r}, which "
                                  "is not a submodule of the model; fix tp_plan")
        if cfg.pp > 1:
            inputs = spec.inputs(model, cfg.mbs, cfg.seq_len)
            if not (isinstance(inputs, (tuple, list)) and len(inputs) == 1):
                raise ConfigError(f"model {spec.path.name}: pipeline-parallel validation feeds "
                                  "one input tensor to the first stage and the loss, but "
                                  "example_inputs returns "
                                  f"{len(inputs)} {'keyword ' if isinstance(inputs, dict) else ''}"
                                  "inputs; use pp=1")
            for stage in range(cfg.pp):
                pipeline_stage(spec, model, list(cfg.layers_per_stage), stage)
    except ConfigError:
        raise
    except Exception as exc:  # the model file's hook refused this model or plan
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model {spec.path.name}: its parallel hooks raised "
                          f"{type(exc).__name__}: {first}; fix the model file or the plan"
                          ) from exc


def build_mesh(cfg, device: torch.device):
    """The device mesh over all ranks, dimensions of size 1 left out; None when dp-only."""
    if cfg.tp == 1 and cfg.pp == 1:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    dims = [(name, size) for name, size in (("pp", cfg.pp), ("dp", cfg.dp), ("tp", cfg.tp))
            if size > 1]
    return init_device_mesh(device.type, tuple(s for _, s in dims),
                            mesh_dim_names=tuple(n for n, _ in dims))


def mesh_coordinates(mesh, rank: int, dp: int) -> dict[str, int]:
    """This rank's index along pp, dp and tp (0 where the mesh has no such dimension)."""
    if mesh is None:
        return {"pp": 0, "dp": rank if dp > 1 else 0, "tp": 0}
    names = mesh.mesh_dim_names or ()
    return {n: (mesh.get_local_rank(n) if n in names else 0) for n in ("pp", "dp", "tp")}


def apply_tp(spec, model: nn.Module, mesh, sequence_parallel: bool) -> nn.Module:
    """Shard ``model`` in place over the mesh's ``tp`` dimension."""
    from torch.distributed.tensor.parallel import parallelize_module

    return parallelize_module(model, mesh["tp"], tp_plan(spec, model, sequence_parallel))


def reduce_partial_grads(params) -> int:
    """All-reduce, once per step, the gradients DTensor leaves as partial sums (replicated
    parameters that saw sequence-sharded activations: the sequence-parallel norms), as
    Megatron-LM does; left partial, every optimizer op reading one would all-reduce it again.
    The bytes reduced."""
    from torch.distributed.tensor import DTensor

    total = 0
    for p in params:
        g = p.grad
        if isinstance(g, DTensor) and any(pl.is_partial() for pl in g.placements):
            p.grad = g.redistribute(g.device_mesh, p.placements)
            total += g.to_local().numel() * g.element_size()
    return total


def build_pipeline(spec, model: nn.Module, cfg, mesh, device: torch.device
                   ) -> tuple[nn.Module, Callable[..., list[torch.Tensor]]]:
    """(this rank's stage module, run(batch) -> the micro-batch losses on the last stage)."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    stage = mesh.get_local_rank("pp")
    first, last = stage == 0, stage == cfg.pp - 1
    module = pipeline_stage(spec, model, list(cfg.layers_per_stage), stage)
    pipe = PipelineStage(module, stage, cfg.pp, device, group=mesh["pp"].get_group())
    kind = ScheduleGPipe if cfg.schedule == "gpipe" else Schedule1F1B

    def loss_fn(output, target):
        return spec.loss(output, (target,))

    # every stage gets the loss function: the schedule runs backward only when it has one
    schedule = kind(pipe, cfg.micro_batches, loss_fn=loss_fn, scale_grads=False)

    def run(batch: torch.Tensor) -> list[torch.Tensor]:
        losses: list[torch.Tensor] = []
        if first:
            schedule.step(batch)
        elif last:
            schedule.step(target=batch, losses=losses)
        else:
            schedule.step()
        return losses

    return module, run
