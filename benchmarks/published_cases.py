"""The 36 published training runs of ``published_cases.csv``, each mapped to what archcost needs:
a bundled model file and its builder arguments, the runtime profile of the stack that ran it, the
precision, the plan, the cluster, and the step time the source's own figure implies.

Every published metric becomes a step time with the source's own FLOP formula (a source that
counts causal attention in full reports more TFLOP/s for the same step than one that halves it):

- Narayanan et al. SC'21 Eq. (3): ``96 B s l h^2 (1 + s/6h + V/16lh)`` with full recompute;
- Megatron-LM core_v0.8.0 ``megatron/training/training.py:73-107`` (the H100 table): attention
  at full s^2, ``12 B s L h^2 ((1 + g/a + s/h) + ffn/h + V/(2 L h))``, no recompute term;
- Llama 3 (Grattafiori et al. 2024, Table 4): PaLM's MFU convention (Chowdhery et al. 2022,
  App. B) ``6 N + 12 L h s`` per token, N all parameters;
- torchtitan, NeMo and Megatron-Bridge publish tokens per second per GPU: step = tokens / rate.

Fields the CSV leaves empty, uncertain or wrong are filled with the rule written next to them,
the same rule for every row of a source (never a per-case knob); each fill is printed with the
case. Sources for the fills: the source documents and code named in each assumption.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "load_cases", "SOURCES", "narayanan_flops", "megatron_v08_flops",
           "palm_flops_per_token"]

# source key -> (label, reference)
SOURCES = {
    "K22": ("Korthikanti 2022", "Korthikanti et al. 2022, Table 5 (step time, A100)"),
    "N21": ("Narayanan SC21", "Narayanan et al. SC'21, Table 1 (TFLOP/s, A100)"),
    "MC24": ("Megatron-Core r0.8", "Megatron-LM README model table (Megatron-Core r0.8.0, H100)"),
    "L3": ("Llama 3", "Grattafiori et al. 2024, Table 4 (405B at 128k, H100)"),
    "TT": ("torchtitan", "torchtitan benchmarks/llama3_h100_202412_torchtitan.md (H100 96GB)"),
    "NEMO": ("NeMo 24.07", "NeMo performance summary, container 24.07 (H100, FP8)"),
    "MB": ("Megatron-Bridge 25.11", "Megatron-Bridge docs/performance-summary.md 25.11"),
}


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # SOURCES key
    model: str  # file under models/
    sets: dict
    seq: int
    dtype: str  # --dtype
    runtime: str  # runtime profile
    plan: str  # plan text (archcost estimate --plan)
    cluster: str
    gpus: int
    metric: str  # the CSV's metric
    value: float  # the CSV's figure in that metric
    step_s: float  # measured step time the figure implies
    memory_gib: float | None = None  # published memory per GPU (torchtitan: max reserved)
    overlap_dp: bool | None = None  # None: the runtime's rule
    cp_comm: str = "p2p"  # CostModel.cp_comm: ring attention, or K,V all-gathered (Llama 3)
    assumptions: tuple[str, ...] = ()
    pending: str = ""  # why the case cannot be predicted yet
    needs_fp8: bool = False
    # the stack's FP8 recipe (--fp8-recipe) and whether its parameter all-gathers move fp8
    # weights (--fp8-all-gather): one rule per source
    fp8_recipe: str = ""
    fp8_all_gather: bool = False
    # whether the stack keeps fp8 copies of the weights between steps (Transformer Engine's
    # weight cache) or casts them in every forward (torchao Float8Linear)
    fp8_weight_cache: bool = True
    original: bool = False  # one of the 18 A100 cases the benchmark was built on
    # the source does not publish its interleaving: priced with the V (pipeline chunks per rank,
    # dividing its layers per stage, at most 8) that archcost finds fastest for the published
    # plan among those that fit, as the run's engineers would have tuned it
    vpp_unpublished: bool = False
    # nor its micro-batch size: priced with the size of 1, 2, 4 or 8 sequences (dividing the
    # sequences per data-parallel replica) that archcost finds fastest among those that fit,
    # chosen together with an unpublished V
    mbs_unpublished: bool = False
    # what recompute=selective recomputes in this run when its config says otherwise than the
    # runtime (runtime.SelectiveRecompute value); "" keeps the runtime's
    selective: str = ""
    extra: dict = field(default_factory=dict)

    def predicted_metric(self, step_s: float) -> float:
        """The predicted step time in the CSV's own metric (for the 18 original cases)."""
        if self.metric == "step_time_s":
            return step_s
        return self.value * self.step_s / step_s  # TFLOP/s and tokens/s scale as 1 / step


def narayanan_flops(gbs: int, s: int, l: int, h: int, V: int) -> float:  # noqa: E741
    """Model FLOPs per step with full recompute, Narayanan et al. SC'21 Eq. (3)."""
    return 96 * gbs * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))


def megatron_v08_flops(gbs: int, s: int, L: int, h: int, V: int, ffn: int, heads: int,
                       groups: int) -> float:
    """Megatron-LM core_v0.8.0 ``num_floating_point_operations`` (GELU MLP, kv_channels = h/a):
    attention counted at full s^2, no recompute term."""
    return 12 * gbs * s * L * h * h * ((1 + groups / heads + s / h) + ffn / h + V / (2 * L * h))


def palm_flops_per_token(params: float, L: int, h: int, s: int) -> float:
    """PaLM's model FLOPs per token (Chowdhery et al. 2022, App. B): 6N + 12 L h s."""
    return 6 * params + 12 * L * h * s


LLAMA_PARAMS = {"405b": 405_853_388_800}  # models/llama.py docstring (Meta's 405.9B)


def _num(text: str) -> float:
    m = re.match(r"\s*([0-9.]+)", text)
    if not m:
        raise ValueError(f"no number in {text!r}")
    return float(m.group(1))


def _mem(text: str) -> float | None:
    m = re.search(r"mem ([0-9.]+)\s*GiB", text)
    return float(m.group(1)) if m else None


def _row_int(row: dict, key: str, default: int | None = None) -> int:
    text = (row.get(key) or "").strip()
    m = re.match(r"(\d+)", text)
    if m:
        return int(m.group(1))
    if default is None:
        raise ValueError(f"{row['id']}: no {key}")
    return default


def _megatron_2022(row: dict) -> Case:
    """Korthikanti 2022 and SC'21: explicit attention with dropout 0.1 and a tied head (as
    Megatron-LM ran GPT), fp16, Selene (DGX A100 + HDR), uniform stages."""
    src = "K22" if row["id"].startswith("K") else "N21"
    layers, hidden, heads = (int(row[k]) for k in ("layers", "hidden", "heads"))
    ffn, vocab, seq, gbs = (int(row[k]) for k in ("ffn", "vocab", "seq", "gbs"))
    dp, tp, pp, vpp, mbs = (int(row[k]) for k in ("dp", "tp", "pp", "vpp", "mbs"))
    rc = row["recompute"]
    recompute = "selective" if rc.startswith("selective") else "full" if rc == "full" else "none"
    sp = int("SP" in rc)
    plan = (f"dp={dp},tp={tp},pp={pp},mbs={mbs},gbs={gbs},recompute={recompute},sp={sp},"
            f"vpp={vpp}" + (",schedule=interleaved-1f1b" if vpp > 1 else ""))
    value = float(row["value"])
    gpus = dp * tp * pp
    if row["metric"] == "step_time_s":
        step = value
    else:
        step = narayanan_flops(gbs, seq, layers, hidden, vocab) / (value * 1e12 * gpus)
    notes = ["explicit attention, dropout 0.1, tied embeddings (Megatron-LM's GPT of 2021-22)"]
    overlap = None
    if src == "N21" and pp == 1:
        overlap = True
        notes.append("--DDP-impl torch (examples/sc21/run_table_1.sh): gradients all-reduced "
                     "during backward")
    return Case(id=row["id"], source=src, model="gpt2.py",
                sets=dict(layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab,
                          dropout=0.1, flash=False),
                seq=seq, dtype="fp16-mixed", runtime="megatron-2022", plan=plan,
                cluster="dgx-a100-hdr", gpus=gpus, metric=row["metric"], value=value,
                step_s=step, overlap_dp=overlap, assumptions=tuple(notes), original=True)


def _mc24(row: dict) -> Case:
    layers, hidden, heads = (int(row[k]) for k in ("layers", "hidden", "heads"))
    vocab, seq, gbs = (int(row[k]) for k in ("vocab", "seq", "gbs"))
    dp, tp, pp = (int(row[k]) for k in ("dp", "tp", "pp"))
    ffn = 4 * hidden
    plan = f"dp={dp},tp={tp},pp={pp},zero=1,sp={int(tp > 1)},mbs=1,gbs={gbs},recompute=none"
    tflops = float(row["value"])
    step = megatron_v08_flops(gbs, seq, layers, hidden, vocab, ffn, heads, heads) / (
        tflops * 1e12 * dp * tp * pp)
    notes = ("GPT-3 style: LayerNorm, GELU ffn = 4h, learned positions, untied embeddings "
             "(parameter counts of the table), no dropout, SDPA attention",
             "BF16 (MFU column = TFLOP/s / 989), H100 SXM 80GB on DGX H100 + NDR",
             "distributed optimizer (zero=1) and sequence parallel for tp > 1 "
             "(--overlap-param-gather and --tp-comm-overlap require them)",
             "no recompute: unpublished, Megatron's default",
             "micro-batch size unpublished: the one of 1, 2, 4, 8 archcost finds fastest "
             "(dividing the sequences per replica, fitting the GPU), as tuned runs do",
             "interleaving unpublished: for pp > 1 the V archcost finds fastest (1-8, dividing "
             "the layers per stage), as tuned runs do; the table's MFU rising at pp 8-16 "
             "suggests they interleaved")
    return Case(id=row["id"], source="MC24", model="gpt2.py",
                sets=dict(layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab,
                          dropout=0.0, flash=True, tie_weights=False),
                seq=seq, dtype="bf16-mixed", runtime="megatron", plan=plan,
                cluster="dgx-h100-ndr", gpus=dp * tp * pp, metric=row["metric"], value=tflops,
                step_s=step, assumptions=notes, vpp_unpublished=pp > 1, mbs_unpublished=True)


def _llama3_128k(row: dict) -> Case:
    layers, hidden = int(row["layers"]), int(row["hidden"])
    seq, gbs = int(row["seq"]), int(row["gbs"])
    dp, tp, pp, cp = (int(row[k]) for k in ("dp", "tp", "pp", "cp"))
    tflops = float(row["value"])
    per_token = palm_flops_per_token(LLAMA_PARAMS["405b"], layers, hidden, seq)
    step = per_token * gbs * seq / (tflops * 1e12 * dp * tp * pp * cp)
    plan = (f"dp={dp},tp={tp},pp={pp},cp={cp},zero=2,sp=1,mbs=1,gbs={gbs},recompute=none,"
            "vpp=2,schedule=interleaved-1f1b")
    notes = ("source is the Llama 3 paper, Table 4 row 3 (the CSV says 'same')",
             "380 TFLOP/s read with PaLM's convention (attention at full s^2): 15.3 s per step; "
             "halved attention would read 10.9 s",
             "FSDP without resharding after forward = zero=2, gradients reduce-scattered in "
             "fp32 (Sec. 3.3.2): runtime torchtitan (Meta's PyTorch stack)",
             "mbs 1, no recompute, sequence parallel: unpublished",
             "interleaved 1F1B (Sec. 3.3.2), V unpublished: the V archcost finds fastest "
             "(1-8, dividing the layers per stage), as for every run that does not publish it; "
             "the paper's stages are 16 x 8 layer slots with the embedding and the head each "
             "in one (126 = 16 x 8 - 2), priced as 128 layers (the embedding and the head "
             "each in a layer's slot, 8 per stage, as the paper's)",
             "attention priced causal (the paper's document mask does less; unpublished)",
             "context parallelism all-gathers K and V before attention, exposed (Sec. 3.3.2: "
             "cp_comm=all_gather), of the 8 KV heads (gqa=native)")
    return Case(id=row["id"], source="L3", model="llama.py",
                sets=dict(preset="405b", gqa="native", layers=16 * 8), cp_comm="all_gather",
                seq=seq,
                dtype="bf16-mixed", runtime="torchtitan", plan=plan, cluster="dgx-h100-ndr",
                gpus=dp * tp * pp * cp, metric=row["metric"], value=tflops, step_s=step,
                assumptions=notes, vpp_unpublished=True)


def _torchtitan(row: dict) -> Case:
    preset = {"8B": "8b", "70B": "70b", "405B": "405b"}[row["model"].split("-")[-1]]
    seq = _row_int(row, "seq")
    gbs, n = int(row["gbs"]), int(row["n_gpu"])
    tps = _num(row["value"])
    step = gbs * seq / (tps * n)
    dp, tp, pp = (int(row[k]) for k in ("dp", "tp", "pp"))
    fp8 = "fp8" in row["precision"]
    notes = ["H100 SXM5 96 GB HBM2e at 500 W on 400 Gb/s RDMA per GPU (the benchmark's "
             "'Hardware' section): cluster grand-teton-h100",
             "FSDP2 per transformer block, bf16 params, fp32 reduce-scatter "
             "(torchtitan 9dec370 parallelize_llama.py, config_manager.py)"]
    if preset == "405b":
        mbs = gbs // dp // 8
        # FSDP2 under torch.distributed.pipelining: no reshard after forward, and gradient
        # sync off for every micro-batch's backward but the last (pipelining/stage.py
        # backward_maybe_with_nosync: set_requires_gradient_sync(False)), so each rank holds
        # its stages' parameters and gradients unsharded through the step, reduce-scatters
        # once and gathers once per step: ZeRO-1's states and collectives
        plan = (f"dp={dp},tp={tp},pp={pp},zero=1,sp=1,mbs={mbs},gbs={gbs},recompute=full,"
                "vpp=2,schedule=interleaved-1f1b")
        notes.append("PP: 8 micro-batches of 4 (n_microbatches defaults to pp), 2 stages per "
                     "rank, FSDP without reshard after forward and without gradient sync "
                     "until the last micro-batch (zero=1: unsharded parameters and gradients "
                     "through the step)")
        runtime = "torchtitan-compile"
    elif tp > 1:
        mbs = gbs // dp
        plan = f"dp={dp},tp={tp},zero=3,sp=1,mbs={mbs},gbs={gbs},recompute=full"
        runtime = "torchtitan-compile"
    else:
        mbs = _row_int(row, "mbs")
        plan = f"dp={dp},zero=3,mbs={mbs},gbs={gbs},recompute=selective"
        runtime = "torchtitan"
        notes.append("selective AC option 'op' (per-op SAC), eager (no torch.compile)")
    if fp8:
        notes.append("float8 tensorwise (torchao Float8LinearConfig, torchtitan's float8 "
                     "default) with the FSDP fp8 all-gather (enable_fsdp_float8_all_gather)")
    return Case(id=row["id"], source="TT", model="llama.py", sets=dict(preset=preset), seq=seq,
                dtype="bf16-mixed", runtime=runtime, plan=plan, cluster="grand-teton-h100",
                gpus=n, metric=row["metric"], value=tps, step_s=step,
                memory_gib=_mem(row["value"]), assumptions=tuple(notes), needs_fp8=fp8,
                fp8_recipe="tensorwise" if fp8 else "", fp8_all_gather=fp8,
                # torchao/float8/float8_linear.py casts the weight in each forward (with the
                # FSDP fp8 all-gather, in fsdp_utils.py fsdp_pre_all_gather): no weight cache
                fp8_weight_cache=False)


# Megatron-Bridge@05d003f src/megatron/bridge/recipes/deepseek/deepseek_v3.py (layout_map, (4, 4);
# mtp_num_layers = 1) and @0426418 scripts/performance/configs/deepseek/
# deepseek_workload_base_configs.py (DEEPSEEK_V3_PRETRAIN_CONFIG_GB200_BF16_V2)
_DSV3_NOTES = (
    "GBS 4096 (the table and the config's V2 variant; V1 says 2048)",
    "force-balanced routing: the model's capacity dispatch at capacity factor 1 gives every "
    "expert k*N/E tokens",
    "no MTP: the recipe builds one MTP layer beside the loss on the last virtual stage "
    "(mtp_num_layers = 1); the model has none",
    "pipeline: the recipe's (pp, vpp) = (4, 4) layout is embedding + 4 decoder layers (the 3 "
    "dense + 1 MoE), 14 x 4, then 1 + MTP + loss; archcost pipelines the 58 MoE layers "
    "uniformly (3 or 4 per virtual stage) and the 3 dense layers travel with the embedding on "
    "the first stage",
    "recompute: the config's recompute_modules = [mla_up_proj]: the q and kv up-projections "
    "and what follows them up to the attention kernel recomputed (selective mla-up-proj)",
    "cluster gb200-nvl72-64: each 64-GPU expert-parallel group in one rack (16 of its 18 trays), "
    "as NVIDIA places EP groups on NVL72 with Slurm segments (Megatron-LM's DeepSeek-V3 GB200 "
    "guide); gb200-nvl72 would fill racks 72 GPUs at a time and cross racks with EP 64",
    "memory: the runtime's fused norm and activation keep what TE's RMSNorm and the fused "
    "SwiGLU keep (about 400 MiB per MoE layer and micro-batch fewer than the eager ops' float32 "
    "copies and silu output); of the rest about 640 MiB is not held by the stack: the q, k, v "
    "that mla_up_proj recompute drops (576 MiB) and the zero-padded v (64 MiB); rank 0 holds "
    "66.5 layer-micro-batches, so the peak is about 42 GiB high",
)


def _nemo_mb(row: dict) -> Case:
    src = "NEMO" if row["id"].startswith("NEMO") else "MB"
    tps = _num(row["value"])
    seq, gbs, n = int(row["seq"]), int(row["gbs"]), int(row["n_gpu"])
    step = gbs * seq / (tps * n)
    if row["id"] == "MB_DSV3_bf16":
        return Case(id=row["id"], source=src, model="deepseek_v3.py", sets={}, seq=seq,
                    dtype="bf16-mixed", runtime="megatron",
                    plan=f"dp=64,pp=4,ep=64,zero=1,mbs=1,gbs={gbs},recompute=selective,vpp=4,"
                         "schedule=interleaved-1f1b",
                    cluster="gb200-nvl72-64", gpus=n, metric=row["metric"], value=tps,
                    step_s=step, assumptions=_DSV3_NOTES, selective="mla-up-proj")
    dp, tp, pp, cp, vpp = (_row_int(row, k, 1) for k in ("dp", "tp", "pp", "cp", "vpp"))
    mbs = _row_int(row, "mbs", 1)
    preset = "70b" if "70B" in row["model"] else "405b" if "405B" in row["model"] else None
    sets = dict(preset=preset) if preset else dict(
        layers=int(row["layers"]), hidden=int(row["hidden"]), heads=int(row["heads"]),
        ffn=int(row["ffn"]), vocab=50688, dropout=0.0, flash=True, tie_weights=False)
    plan = (f"dp={dp},tp={tp},pp={pp},cp={cp},zero=1,sp=1,mbs={mbs},gbs={gbs},recompute=none,"
            f"vpp={vpp},schedule=interleaved-1f1b")
    # NeMo 24.x: Transformer Engine DelayedScaling (amax history 1024); Megatron-Bridge 25.11
    # fp8_cs: current (per-tensor) scaling with --fp8-param-gather
    recipe = "delayed" if src == "NEMO" else "tensorwise"
    fp8_note = ("FP8: TE delayed scaling (NeMo's recipe), bf16 parameter all-gathers"
                if src == "NEMO" else
                "FP8: current scaling (fp8_cs) with fp8 parameter all-gathers (fp8_param_gather)")
    return Case(id=row["id"], source=src, model="llama.py" if preset else "gpt2.py", sets=sets,
                seq=seq, dtype="bf16-mixed", runtime="megatron", plan=plan,
                cluster="dgx-h100-ndr", gpus=n, metric=row["metric"], value=tps, step_s=step,
                assumptions=("distributed optimizer (zero=1), sequence parallel, no recompute",
                             fp8_note),
                needs_fp8=True, fp8_recipe=recipe, fp8_all_gather=src == "MB")


def load_cases(path: str | Path) -> list[Case]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        rid = row["id"]
        if rid.startswith(("K", "N21")):
            out.append(_megatron_2022(row))
        elif rid.startswith("MC24"):
            out.append(_mc24(row))
        elif rid.startswith("L3"):
            out.append(_llama3_128k(row))
        elif rid.startswith("TT"):
            out.append(_torchtitan(row))
        elif rid.startswith(("NEMO", "MB")):
            out.append(_nemo_mb(row))
        else:
            raise ValueError(f"{rid}: no mapping for this source")
    return out
