"""A corpus of bad inputs across every command: each is one ``error:`` line on stderr, exit code 2
(130 on Ctrl-C), no traceback, nothing on stdout, and no file left behind.

Table-driven: a case is an id, the command line (``{T}`` is the case's own folder, where every
output goes and nothing may remain; ``{M}`` the test model files, ``{MODELS}`` the bundled ones,
``{BAD}`` the malformed profiles, ``{D}`` the bad documents, ``{R}`` the committed reports), a
phrase the error line must hold (the problem it names), and the exit code. Most cases fail
before anything is traced; those that trace use the test models in ``tests/data/models``.
Ctrl-C and the parser's usage errors are also run through real ``archcost`` processes at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from archcost.cli import app
from tests.conftest import DATA, MODELS, ROOT

M = DATA / "models"
BAD = DATA / "bad_profiles"
TINY = "{M}/tiny_ok.py -s 4"
GPT = "{MODELS}/gpt2.py --set layers=2 --set hidden=64 --set heads=4 --set vocab=256 -s 8"
MIS = "{M}/misbehaves.py -s 4"
CI_RUN = "[tool.archcost]\n[[tool.archcost.runs]]\nname = 'a'\nkind = 'analyze'\n" \
         "model = 'tiny_ok.py'\n"


@dataclass(frozen=True)
class Case:
    id: str
    args: str
    expect: str  # a phrase of the one error line: the problem it names
    code: int = 2
    files: dict[str, str] = field(default_factory=dict)  # written to {T} first
    interrupt_at: str | None = None  # "module:function" that raises KeyboardInterrupt


def c(id, args, expect, code=2, files=None, interrupt_at=None):
    return Case(id, args, expect, code, files or {}, interrupt_at)


def pyproject(*run_lines: str, head: str = "[tool.archcost]\n") -> dict[str, str]:
    """A project folder for ``archcost ci --config {T}/pyproject.toml``: one run."""
    body = head + "[[tool.archcost.runs]]\n" + "".join(f"{ln}\n" for ln in run_lines)
    return {"pyproject.toml": body, "tiny_ok.py": (M / "tiny_ok.py").read_text()}


RUN = ("name = 'a'", "kind = 'analyze'", "model = 'tiny_ok.py'")
TINY_OK = (M / "tiny_ok.py").read_text()
REPORT = (ROOT / "reports" / "gpt2-small-h100.json").read_text()
HF_LLAMA = (DATA / "hf" / "llama.json").read_text()
GPU_YAML = (ROOT / "hardware_profiles" / "gpus" / "h100-sxm.yaml").read_text()

CASES = [
    # ---- model files (analyze) ----
    c("model-missing", "analyze {T}/nope.py", "not found"),
    c("model-is-a-folder", "analyze {T}", "not found"),
    c("model-syntax-error", "analyze {M}/syntax_error.py", "syntax error"),
    c("model-import-error", "analyze {M}/import_error.py", "ModuleNotFoundError"),
    c("model-no-build_model", "analyze {M}/no_builder.py", "defines no function build_model"),
    c("model-unknown-builder", "analyze {M}/tiny_ok.py:nosuch", "defines no function nosuch"),
    c("model-no-example_inputs", "analyze {M}/no_inputs.py", "defines no example_inputs"),
    c("model-builder-raises", "analyze {M}/builder_raises.py", "raised ValueError"),
    c("model-returns-not-module", "analyze {M}/returns_not_module.py", "not a torch.nn.Module"),
    c("model-example_inputs-wrong", "analyze {M}/bad_inputs.py", "make example_inputs match"),
    c("infer-kv-heads-not-dividing", "infer hf:llama-3.1-8b --set num_hidden_layers=1 --set "
      "num_key_value_heads=5 -i 8 -n 2", "failed: RuntimeError: Number of heads in key and "
      "value must divide"),
    c("model-no-fake-kernel", "analyze {M}/no_fake_kernel.py", "no fake-tensor kernel"),
    # ---- trace assumptions ----
    c("routing-unknown", "analyze {M}/tiny_ok.py --routing uniform", "use balanced, capacity=F"),
    c("routing-capacity-below-1", "analyze {M}/tiny_ok.py --routing capacity=0.5",
      "a number >= 1"),
    c("routing-histogram-missing", "plan {M}/tiny_ok.py --routing histogram={T}/nope.json",
      "cannot read"),
    c("routing-histogram-not-a-list", "analyze {M}/tiny_ok.py --routing histogram={M}/tied.py",
      "is not JSON"),
    c("mask-density-above-1", "sweep {M}/tiny_ok.py --mask-density 1.5", "give a share in [0, 1]"),
    c("trace-timeout-zero", "analyze {M}/tiny_ok.py --trace-timeout 0", "seconds > 0"),
    c("model-exit-on-import", "analyze {M}/exits_on_import.py", "importing it called sys.exit(0)"),
    c("model-exit0-builder", f"analyze {MIS} --set at=builder --set action=exit0",
      "build_model() called sys.exit(0)"),
    c("model-exit3-builder", f"analyze {MIS} --set at=builder --set action=exit3",
      "build_model() called sys.exit(3)"),
    c("model-exit-text-builder", f"analyze {MIS} --set at=builder --set action=exit_text",
      "sys.exit('stopped by the model')"),
    c("model-exit-inputs", f"analyze {MIS} --set at=inputs", "example_inputs() called sys.exit"),
    c("model-exit-forward", f"analyze {MIS} --set at=forward", "training step called sys.exit"),
    c("model-exit-loss", f"analyze {MIS} --set at=loss", "loss() called sys.exit"),
    c("plan-model-exit-builder", f"plan {MIS} --set at=builder -o {{T}}/p.json",
      "build_model() called sys.exit(0)"),
    c("estimate-model-exit-forward", f"estimate {MIS} --set at=forward --plan gbs=1",
      "training step called sys.exit"),
    c("validate-model-exit-import", "validate {M}/exits_on_import.py --plan mbs=1,gbs=1",
      "importing it called sys.exit"),
    c("sweep-model-missing", "sweep {T}/nope.py", "not found"),
    c("plan-model-syntax-error", "plan {M}/syntax_error.py", "syntax error"),
    c("estimate-model-no-builder", "estimate {M}/no_builder.py --plan gbs=8", "build_model"),
    # ---- --set keys, values and types ----
    c("set-unknown-key", f"analyze {TINY} --set widht=3", "has no parameter 'widht'"),
    c("set-not-key-value", f"analyze {TINY} --set hidden", "is not KEY=VALUE"),
    c("set-empty-key", f"analyze {TINY} --set =3", "is not KEY=VALUE"),
    c("set-bad-key-name", f"analyze {TINY} --set 'two words=3'", "is not KEY=VALUE"),
    c("set-bool-maybe", f"analyze {TINY} --set frozen_input=maybe", "true or false"),
    c("set-bool-number", f"analyze {TINY} --set frozen_input=2", "true or false"),
    c("set-int-text", f"analyze {TINY} --set hidden=wide", "a whole number"),
    c("set-int-float", f"analyze {TINY} --set hidden=32.5", "a whole number"),
    c("set-int-bool", f"analyze {TINY} --set layers=true", "a whole number"),
    c("set-int-none", f"analyze {TINY} --set layers=none", "a whole number"),
    c("set-gpt2-bias-maybe", f"analyze {GPT} --set bias=maybe", "takes bias as true or false"),
    c("set-gpt2-dropout-text", f"analyze {GPT} --set dropout=lots", "a number"),
    c("set-gpt2-hidden-zero", f"analyze {GPT} --set hidden=0", "hidden=0 must be >= 1"),
    c("set-gpt2-layers-negative", f"analyze {GPT} --set layers=-2", "layers=-2 must be >= 1"),
    c("set-gpt2-heads-not-dividing", f"analyze {GPT} --set heads=5", "not divisible by heads"),
    c("set-gpt2-dropout-one", f"analyze {GPT} --set dropout=1.0", "dropout=1.0"),
    c("set-llama-preset-unknown", "analyze {MODELS}/llama.py --set preset=7b -s 8",
      "preset='7b' is unknown"),
    c("set-llama-hidden-zero", "analyze {MODELS}/llama.py --set preset=tiny --set hidden=0 -s 8",
      "hidden=0 must be >= 1"),
    c("set-llama-kv-heads", "analyze {MODELS}/llama.py --set preset=tiny --set kv_heads=3 -s 8",
      "heads % kv_heads"),
    c("set-moe-top-k", "analyze {MODELS}/moe.py --set preset=tiny --set top_k=9 -s 8",
      "top_k=9 must be between 1 and experts"),
    c("set-moe-experts-zero", "analyze {MODELS}/moe.py --set preset=tiny --set experts=0 -s 8",
      "experts=0 must be >= 1"),
    c("set-resnet-depth", "analyze {MODELS}/resnet.py --set depth=42", "depth=42 is unsupported"),
    c("set-resnet-width-zero", "analyze {MODELS}/resnet.py --set width=0", "width=0 must be"),
    c("set-vit-patch", "analyze {MODELS}/vit.py --set image_size=30 --set patch=8",
      "not a multiple of patch"),
    c("set-vit-patch-zero", "analyze {MODELS}/vit.py --set patch=0", "patch=0 must be >= 1"),
    c("set-bert-seq-too-long", "analyze {MODELS}/bert.py -s 1024", "exceeds max_positions"),
    c("set-bert-vocab-negative", "analyze {MODELS}/bert.py -s 8 --set vocab=-1", "vocab=-1"),
    c("set-seed-mlp-layers", "analyze {MODELS}/seed_mlp.py --set layers=1", "at least 2 layers"),
    c("set-seed-mlp-d-in", "analyze {MODELS}/seed_mlp.py --set d_in=0", "d_in=0 must be >= 1"),
    c("plan-set-unknown", "plan {M}/tiny_ok.py --set widht=3", "has no parameter 'widht'"),
    c("estimate-set-bool", "estimate {M}/tiny_ok.py --set frozen_input=maybe --plan gbs=8",
      "true or false"),
    c("validate-set-int", "validate {M}/tiny_ok.py --set hidden=x --plan gbs=1",
      "a whole number"),
    c("sweep-set-unknown", "sweep {M}/tiny_ok.py --set widht=3", "has no parameter 'widht'"),
    # ---- sizes ----
    c("batch-zero", f"analyze {TINY} -b 0", "--batch-size"),
    c("batch-negative", f"analyze {TINY} -b -3", "--batch-size"),
    c("batch-text", f"analyze {TINY} -b abc", "--batch-size"),
    c("batch-float", f"analyze {TINY} -b 1.5", "--batch-size"),
    c("batch-huge", f"analyze {TINY} -b 99999999999999999999", "--batch-size"),
    c("seq-zero", "analyze {M}/tiny_ok.py -s 0", "--seq-len"),
    c("seq-negative", "analyze {M}/tiny_ok.py -s -1", "--seq-len"),
    c("seq-huge", "analyze {M}/tiny_ok.py -s 4294967296", "--seq-len"),
    c("plan-seq-zero", "plan {M}/tiny_ok.py -s 0", "--seq-len"),
    c("plan-seq-text", "plan {M}/tiny_ok.py -s long", "--seq-len"),
    c("estimate-seq-zero", "estimate {M}/tiny_ok.py -s 0 --plan gbs=8", "--seq-len"),
    c("validate-seq-zero", "validate {M}/tiny_ok.py -s 0 --plan gbs=1", "--seq-len"),
    c("sweep-seq-zero", "sweep {M}/tiny_ok.py -s 0", "--seq-len"),
    c("plan-gbs-zero", "plan {M}/tiny_ok.py -s 4 --gbs 0", "--gbs"),
    c("sweep-gbs-negative", "sweep {M}/tiny_ok.py -s 4 --gbs -8", "--gbs"),
    c("plan-gpus-zero", "plan {M}/tiny_ok.py -s 4 --gpus 0", "--gpus '0'"),
    c("plan-gpus-text", "plan {M}/tiny_ok.py -s 4 --gpus eight", "--gpus 'eight'"),
    c("plan-gpus-list-bad", "plan {M}/tiny_ok.py -s 4 --gpus 8,x", "--gpus '8,x'"),
    c("plan-gpus-empty", "plan {M}/tiny_ok.py -s 4 --gpus ,", "--gpus ','"),
    c("plan-gpus-partial-nodes", "plan {M}/tiny_ok.py -s 4 --gpus 12",
      "not a whole number of 8-GPU nodes"),
    c("plan-gpus-huge", "plan {M}/tiny_ok.py -s 4 --gpus 99999999999", "--gpus"),
    c("sweep-gpus-negative", "sweep {M}/tiny_ok.py -s 4 --gpus -8", "--gpus '-8'"),
    c("sweep-gpus-twice", "sweep {M}/tiny_ok.py -s 4 --gpus 8,16 --vary gpus=8,16",
      "give the GPU counts once"),
    c("analyze-top-zero", f"analyze {TINY} --top 0", "--top"),
    c("plan-top-zero", "plan {M}/tiny_ok.py -s 4 --top 0", "--top"),
    c("analyze-depth-negative", f"analyze {TINY} --depth -1", "--depth"),
    c("plan-max-tp-zero", "plan {M}/tiny_ok.py -s 4 --max-tp 0", "--max-tp"),
    c("plan-usable-zero", "plan {M}/tiny_ok.py -s 4 --usable-memory 0", "--usable-memory 0.0"),
    c("plan-usable-over-one", "plan {M}/tiny_ok.py -s 4 --usable-memory 1.5", "--usable-memory"),
    c("analyze-usable-text", f"analyze {TINY} --usable-memory most", "--usable-memory"),
    c("estimate-usable-negative", "estimate {M}/tiny_ok.py --usable-memory -1 --plan gbs=8",
      "--usable-memory"),
    c("sweep-usable-zero", "sweep {M}/tiny_ok.py --usable-memory 0", "--usable-memory 0.0"),
    c("sweep-rerank-zero", "sweep {M}/tiny_ok.py --rerank 0", "--rerank"),
    c("validate-nproc-zero", "validate {M}/tiny_ok.py --nproc 0 --plan gbs=1", "--nproc"),
    c("validate-steps-zero", "validate {M}/tiny_ok.py --steps 0 --plan gbs=1", "--steps"),
    c("validate-warmup-negative", "validate {M}/tiny_ok.py --warmup -1 --plan gbs=1",
      "--warmup"),
    c("validate-timeout-zero", "validate {M}/tiny_ok.py --timeout 0 --plan gbs=1",
      "--timeout 0.0"),
    c("analyze-solve-bad", f"analyze {TINY} --solve 'min b'", "is not understood"),
    c("analyze-solve-bad-limit", f"analyze {TINY} --solve 'max b s.t. memory <= lots'",
      "is not a memory size"),
    c("analyze-solve-capacity-no-hw", f"analyze {TINY} --solve 'max b s.t. memory <= capacity'",
      "needs --hardware"),
    # ---- dtypes, optimizers, recompute ----
    c("dtype-fp6", f"analyze {TINY} --dtype fp6", "is not a precision"),
    c("dtype-fp8-on-a100", f"analyze {TINY} --dtype fp8 --hardware a100-sxm-80gb",
      "GPU profile a100-sxm-80gb has no fp8 peak"),
    c("plan-nvfp4-on-hopper", "plan {M}/tiny_ok.py -s 4 --dtype nvfp4 --hardware dgx-h100-ndr",
      "GPU profile h100-sxm has no nvfp4 peak"),
    c("estimate-mxfp8-on-a100", "estimate {M}/tiny_ok.py --dtype mxfp8 --hardware dgx-a100-hdr "
      "--plan gbs=8", "has no mxfp8 peak"),
    c("sweep-fp8-on-a100", "sweep {M}/tiny_ok.py -s 4 --dtype fp8 --hardware dgx-a100-hdr",
      "has no fp8 peak"),
    c("fp8-recipe-unknown", f"analyze {TINY} --dtype fp8 --fp8-recipe blockwise",
      "--fp8-recipe 'blockwise' is not a recipe"),
    c("fp8-recipe-without-fp8", f"analyze {TINY} --dtype bf16-mixed --fp8-recipe delayed",
      "--fp8-recipe delayed applies to --dtype fp8"),
    c("fp8-all-gather-without-fp8", "estimate {M}/tiny_ok.py --dtype bf16-mixed --fp8-all-gather "
      "--plan gbs=8", "--fp8-all-gather needs low-precision GEMMs"),
    c("dtype-empty", f"analyze {TINY} --dtype ''", "is not a precision"),
    c("plan-dtype-unknown", "plan {M}/tiny_ok.py --dtype half", "is not a precision"),
    c("estimate-dtype-unknown", "estimate {M}/tiny_ok.py --dtype bf17 --plan gbs=8",
      "is not a precision"),
    c("sweep-dtype-unknown", "sweep {M}/tiny_ok.py --dtype int4", "is not a precision"),
    c("validate-dtype-mixed", "validate {M}/tiny_ok.py --dtype bf16-mixed --plan gbs=1",
      "validate runs fp32, bf16, fp16"),
    c("validate-dtype-unknown", "validate {M}/tiny_ok.py --dtype fp4 --plan gbs=1",
      "is not a precision"),
    c("optimizer-unknown", f"analyze {TINY} --optimizer lion", "is unknown"),
    c("plan-optimizer-unknown", "plan {M}/tiny_ok.py -s 4 --optimizer adafactor", "is unknown"),
    c("validate-optimizer-unknown", "validate {M}/tiny_ok.py -s 4 --optimizer sgdw "
      "--plan mbs=1,gbs=1", "is unknown"),
    c("recompute-unknown", f"analyze {TINY} --recompute some", "--recompute 'some' is unknown"),
    c("plan-fix-recompute-unknown", "plan {M}/tiny_ok.py -s 4 --fix recompute=half",
      "recompute is none, selective or full"),
    c("estimate-plan-recompute-unknown", "estimate {M}/tiny_ok.py --plan gbs=8,recompute=half",
      "recompute"),
    c("validate-recompute", "validate {M}/tiny_ok.py --plan gbs=1,recompute=full",
      "validate runs recompute=none"),
    # ---- hardware and cluster profiles ----
    c("analyze-hardware-unknown", f"analyze {TINY} --hardware h100x", "profile named 'h100x'"),
    c("analyze-hardware-missing-file", f"analyze {TINY} --hardware {{T}}/mine.yaml", "mine.yaml"),
    c("analyze-hardware-yaml-syntax", f"analyze {TINY} --hardware {{BAD}}/yaml_syntax.yaml",
      "yaml_syntax.yaml"),
    c("analyze-hardware-no-unit", f"analyze {TINY} --hardware {{BAD}}/no_unit.yaml",
      "no_unit.yaml"),
    c("plan-cluster-unknown", "plan {M}/tiny_ok.py --hardware dgx-h900", "dgx-h900"),
    c("plan-cluster-old-spelling-unknown", "plan {M}/tiny_ok.py --cluster dgx-h900", "dgx-h900"),
    c("plan-gpu-profile-as-cluster", "plan {M}/tiny_ok.py --hardware h100-sxm",
      "'h100-sxm' is a GPU profile; a cluster profile is needed"),
    c("plan-cluster-bad-file", "plan {M}/tiny_ok.py --hardware {BAD}/cluster_wrong_unit.yaml",
      "cluster_wrong_unit.yaml"),
    c("estimate-cluster-unknown", "estimate {M}/tiny_ok.py --hardware nowhere --plan gbs=8",
      "nowhere"),
    c("sweep-cluster-unknown", "sweep {M}/tiny_ok.py --hardware nowhere", "nowhere"),
    c("validate-hardware-unknown", "validate {M}/tiny_ok.py --hardware nowhere --plan gbs=1",
      "nowhere"),
    c("validate-gpu-profile-for-2", "validate {M}/tiny_ok.py --hardware h100-sxm --nproc 2 "
      "--plan dp=2,gbs=2", "need a cluster profile"),
    *[c(f"profiles-show-{p.stem}", f"profiles show {{BAD}}/{p.name}", p.name)
      for p in sorted(BAD.glob("*.yaml")) if "_given_a_" not in p.name],
    c("plan-gpu-file-as-cluster", "plan {M}/tiny_ok.py --hardware {BAD}/cluster_given_a_gpu.yaml",
      "this is a GPU profile"),
    c("sweep-cluster-file-as-gpu", "sweep {M}/tiny_ok.py --vary gpu={BAD}/gpu_given_a_cluster.yaml",
      "this is a cluster profile"),
    c("profiles-show-unknown", "profiles show h100x", "no profile named 'h100x'"),
    c("profiles-show-missing-file", "profiles show {T}/none.yaml", "none.yaml"),
    c("profiles-show-gpus-zero", "profiles show dgx-h100-ndr --gpus 0", "--gpus '0'"),
    c("profiles-show-gpus-text", "profiles show dgx-h100-ndr --gpus many", "--gpus 'many'"),
    c("profiles-show-gpus-list", "profiles show dgx-h100-ndr --gpus 8,16",
      "one GPU count"),
    c("profiles-show-gpus-partial", "profiles show dgx-h100-ndr --gpus 12",
      "not a whole number of 8-GPU nodes"),
    c("profiles-show-gpus-on-gpu", "profiles show h100-sxm --gpus 8", "is a GPU profile"),
    c("profiles-show-no-name", "profiles show", "Missing argument"),
    c("profiles-list-extra", "profiles list h100-sxm", "unexpected extra argument"),
    c("profiles-list-bad-option", "profiles list --all", "No such option"),
    c("profiles-unknown-command", "profiles shw", "No such command"),
    # ---- plans ----
    c("estimate-no-plan", "estimate {M}/tiny_ok.py", "Missing option '--plan'"),
    c("estimate-plan-no-gbs", "estimate {M}/tiny_ok.py --plan dp=2", "plan has no gbs"),
    c("estimate-plan-unknown-key", "estimate {M}/tiny_ok.py --plan dq=2,gbs=8", "dq"),
    c("estimate-plan-not-a-number", "estimate {M}/tiny_ok.py --plan dp=two,gbs=8", "dp"),
    c("estimate-plan-zero", "estimate {M}/tiny_ok.py --plan dp=0,gbs=8", "dp"),
    c("estimate-plan-negative-gbs", "estimate {M}/tiny_ok.py --plan gbs=-8", "gbs"),
    c("estimate-plan-not-dividing", "estimate {M}/tiny_ok.py --plan dp=2,gbs=7",
      "gbs(7) % (dp(2)*mbs(1)) != 0"),
    c("estimate-plan-schedule", "estimate {M}/tiny_ok.py --plan schedule=zigzag,gbs=8",
      "zigzag"),
    c("estimate-plan-twice", "estimate {M}/tiny_ok.py --plan dp=2,dp=4,gbs=8", "given twice"),
    c("sweep-value-twice", "sweep {M}/tiny_ok.py --vary mem_bw=1x,2x,1x", "1x given twice"),
    c("sweep-vary-tp", "sweep {M}/tiny_ok.py --vary tp=2,4", "parallelism is not a sweep axis"),
    c("estimate-plan-not-kv", "estimate {M}/tiny_ok.py --plan 'dp 2'", "dp 2"),
    c("estimate-plan-offload", "estimate {M}/tiny_ok.py --plan offload=optimizer,gbs=8",
      "offload"),
    c("estimate-plan-tp-heads", f"estimate {GPT} --plan tp=3,gbs=8", "tp(3)"),
    c("estimate-plan-file-missing", "estimate {M}/tiny_ok.py --plan {T}/plan.json",
      "no such file"),
    c("estimate-plan-file-not-json", "estimate {M}/tiny_ok.py --plan {D}/notjson.json",
      "not JSON"),
    c("estimate-plan-file-no-plan", "estimate {M}/tiny_ok.py --plan {R}/gpt2-small-h100.json",
      "holds no plan"),
    c("plan-fix-unknown-key", "plan {M}/tiny_ok.py -s 4 --fix warp=9", "warp"),
    c("plan-constraint-bad", "plan {M}/tiny_ok.py -s 4 --constraint 'tp<>8'", "tp<>8"),
    c("plan-objective-unknown", "plan {M}/tiny_ok.py --objective speed", "--objective 'speed'"),
    c("sweep-objective-unknown", "sweep {M}/tiny_ok.py --objective speed",
      "--objective 'speed'"),
    c("plan-partition-unknown", "plan {M}/tiny_ok.py --partition greedy", "--partition"),
    c("plan-emit-unknown", "plan {M}/tiny_ok.py --emit toml", "--emit 'toml'"),
    c("estimate-emit-unknown", "estimate {M}/tiny_ok.py --emit nemo --plan gbs=8",
      "--emit 'nemo'"),
    c("sweep-vary-unknown", "sweep {M}/tiny_ok.py --vary warp_speed=2x", "unknown key"),
    c("sweep-vary-bad-value", "sweep {M}/tiny_ok.py --vary mem_bw=fast", "mem_bw"),
    c("sweep-price-bad", "sweep {M}/tiny_ok.py --price h100-sxm", "--price 'h100-sxm'"),
    c("validate-plan-gpus-mismatch", "validate {M}/tiny_ok.py --plan dp=2,gbs=2",
      "--nproc is 1"),
    c("validate-plan-cp", "validate {M}/tiny_ok.py --nproc 2 --plan cp=2,gbs=2",
      "cp/ep and offload plans are estimated"),
    c("validate-plan-no-gbs", "validate {M}/tiny_ok.py --plan mbs=1", "plan has no gbs"),
    c("validate-device-tpu", "validate {M}/tiny_ok.py --device tpu --plan gbs=1",
      "--device 'tpu'"),
    # ---- documents for report and diff ----
    c("report-missing", "report {T}/none.json", "none.json"),
    c("report-folder", "report {D}/folder.json", "folder.json"),
    c("report-not-json", "report {D}/notjson.json", "notjson.json"),
    c("report-empty", "report {D}/empty.json", "empty.json"),
    c("report-binary", "report {D}/binary.json", "binary.json"),
    c("report-a-list", "report {D}/list.json", "list.json"),
    c("report-no-kind", "report {D}/nokind.json", "nokind.json"),
    c("report-wrong-kind", "report {D}/horoscope.json", "horoscope.json"),
    c("report-no-model", "report {D}/nomodel.json", "nomodel.json"),
    c("report-format-unknown", "report {R}/gpt2-small-h100.json --format pdf", "--format 'pdf'"),
    c("report-markdown-and-html", "report {R}/gpt2-small-h100.json --markdown --format html",
      "choose one"),
    c("report-timeline-missing", "report {R}/llama-70b-plan-64xh100.json --timeline "
      "{T}/t.json", "t.json"),
    c("report-timeline-not-trace", "report {R}/llama-70b-plan-64xh100.json --timeline "
      "{D}/nomodel.json", "not a Chrome trace"),
    c("report-timeline-not-json", "report {R}/llama-70b-plan-64xh100.json --timeline "
      "{D}/notjson.json", "notjson.json"),
    c("report-no-argument", "report", "Missing argument"),
    c("diff-base-missing", "diff {T}/none.json {R}/gpt2-small-h100.json", "none.json"),
    c("diff-head-not-json", "diff {R}/gpt2-small-h100.json {D}/notjson.json", "notjson.json"),
    c("diff-head-folder", "diff {R}/gpt2-small-h100.json {D}/folder.json", "folder.json"),
    c("diff-wrong-kind", "diff {R}/gpt2-small-h100.json {D}/horoscope.json", "horoscope.json"),
    c("diff-kinds-differ", "diff {R}/gpt2-small-h100.json {R}/llama-70b-plan-64xh100.json",
      "kind"),
    c("diff-models-differ", "diff {R}/gpt2-small-h100.json {R}/llama-8b-h100.json", "model"),
    c("diff-one-argument", "diff {R}/gpt2-small-h100.json", "Missing argument"),
    # ---- thresholds and metrics ----
    c("diff-threshold-text", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json "
      "--fail-above lots", "lots"),
    c("diff-threshold-negative", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json "
      "--fail-above -5%", "-5%"),
    c("diff-metric-unknown", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json "
      "--metrics warp_factor", "warp_factor"),
    c("diff-json-and-markdown", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json "
      "--json --markdown", "choose one"),
    c("sweep-json-and-csv", "sweep {M}/tiny_ok.py --json --csv", "choose one"),
    # ---- output paths ----
    c("analyze-o-folder", f"analyze {TINY} -o {{T}}", "is a folder"),
    c("analyze-o-missing-folder", f"analyze {TINY} -o {{T}}/no/such/r.json", "does not exist"),
    c("infer-o-under-a-file", "infer {M}/tiny_ok.py -o {T}/f.json/x.json",
      "f.json is a file, not a folder", files={"f.json": "{}"}),
    c("analyze-o-unwritable", f"analyze {TINY} -o /proc/archcost-r.json", "cannot create a file"),
    c("analyze-graph-folder", f"analyze {TINY} --graph {{T}}/g.json/", "is a folder",
      files={"g.json/keep": ""}),
    c("analyze-graph-format", f"analyze {TINY} --graph {{T}}/g.txt", "unknown format"),
    c("analyze-graph-missing-folder", f"analyze {TINY} --graph {{T}}/x/g.json", "does not exist"),
    c("analyze-o-ok-graph-bad", f"analyze {TINY} -o {{T}}/r.json --graph {{T}}/x/g.json",
      "does not exist"),
    c("plan-o-folder", "plan {M}/tiny_ok.py -o {T}", "is a folder"),
    c("plan-o-unwritable", "plan {M}/tiny_ok.py -o /proc/archcost-p.json", "cannot create"),
    c("plan-timeline-format", "plan {M}/tiny_ok.py --timeline {T}/t.txt", "name the file .json"),
    c("plan-timeline-missing-folder", "plan {M}/tiny_ok.py -o {T}/p.json --timeline "
      "{T}/x/t.json", "does not exist"),
    c("estimate-o-folder", "estimate {M}/tiny_ok.py --plan gbs=8 -o {T}", "is a folder"),
    c("estimate-timeline-folder", "estimate {M}/tiny_ok.py --plan gbs=8 --timeline {T}/t.json",
      "is a folder", files={"t.json/keep": ""}),
    c("validate-o-missing-folder", "validate {M}/tiny_ok.py --plan gbs=1 -o {T}/x/v.json",
      "does not exist"),
    c("sweep-o-folder", "sweep {M}/tiny_ok.py -o {T}", "is a folder"),
    c("report-o-folder", "report {R}/gpt2-small-h100.json -o {T}", "is a folder"),
    c("report-o-missing-folder", "report {R}/gpt2-small-h100.json -o {T}/x/r.html",
      "does not exist"),
    c("report-o-unwritable", "report {R}/gpt2-small-h100.json -o /proc/archcost-r.md",
      "cannot create"),
    # an output that is one of the command's inputs (any spelling of it), or empty
    c("report-o-is-the-document", "report {T}/same.json -o {T}/./same.json",
      "is the document RESULT.json", files={"same.json": REPORT}),
    c("report-o-is-the-timeline", "report {T}/r.json --timeline {T}/t.json -o {T}/t.json",
      "is the --timeline trace", files={"r.json": REPORT, "t.json": "{}"}),
    c("analyze-o-is-the-model", "analyze {T}/m.py -s 4 -o {T}/m.py", "is the model file",
      files={"m.py": TINY_OK}),
    c("analyze-graph-is-the-hf-config", "analyze hf:{T}/c.json -s 4 --graph {T}/c.json",
      "is the model file", files={"c.json": HF_LLAMA}),
    c("analyze-o-is-the-profile", "analyze {T}/m.py -s 4 --hardware {T}/g.yaml -o {T}/g.yaml",
      "is the --hardware profile", files={"m.py": TINY_OK, "g.yaml": GPU_YAML}),
    c("plan-o-is-the-model", "plan {T}/m.py -s 4 -o {T}/m.py", "is the model file",
      files={"m.py": TINY_OK}),
    c("estimate-timeline-is-the-hf-config", "estimate hf:{T} --plan gbs=8 --timeline "
      "{T}/config.json", "is the model file", files={"config.json": HF_LLAMA}),
    c("infer-o-is-the-model", "infer {T}/m.py -i 8 -n 4 -o {T}/m.py", "is the model file",
      files={"m.py": TINY_OK}),
    c("sweep-o-is-the-model", "sweep {T}/m.py -s 4 -o {T}/m.py", "is the model file",
      files={"m.py": TINY_OK}),
    c("sweep-infer-o-is-the-model", "sweep {T}/m.py:build_model --infer -o {T}/m.py",
      "is the model file", files={"m.py": TINY_OK}),
    c("validate-o-is-the-model", "validate {T}/m.py --plan gbs=1 -o {T}/m.py",
      "is the model file", files={"m.py": TINY_OK}),
    c("validate-infer-o-is-the-model", "validate {T}/m.py --infer -o {T}/m.py",
      "is the model file", files={"m.py": TINY_OK}),
    c("ci-summary-is-the-config", "ci --config {T}/pyproject.toml --summary {T}/pyproject.toml",
      "is the --config file", files=pyproject(*RUN)),
    c("analyze-o-is-the-histogram", "analyze {T}/m.py -s 4 --routing histogram={T}/h.json -o "
      "{T}/h.json", "is the --routing histogram", files={"m.py": TINY_OK, "h.json": "[1, 1]"}),
    c("infer-o-is-the-histogram", "infer {T}/m.py -i 8 -n 4 --routing histogram={T}/h.json -o "
      "{T}/./h.json", "is the --routing histogram", files={"m.py": TINY_OK, "h.json": "[1, 1]"}),
    c("plan-o-is-the-histogram", "plan {T}/m.py -s 4 --routing histogram={T}/h.json --timeline "
      "{T}/h.json", "is the --routing histogram", files={"m.py": TINY_OK, "h.json": "[1, 1]"}),
    c("sweep-infer-o-is-the-histogram", "sweep {T}/m.py:build_model --infer --routing "
      "histogram={T}/h.json -o {T}/h.json", "is the --routing histogram",
      files={"m.py": TINY_OK, "h.json": "[1, 1]"}),
    c("ci-out-dir-is-the-baselines", "ci --config {T}/pyproject.toml --out-dir {T}/reports",
      "is reports_dir, where the baselines are", files=pyproject(*RUN)),
    c("ci-summary-is-a-report", "ci --config {T}/pyproject.toml --out-dir {T} --summary "
      "{T}/a.md", "is a report this run writes", files=pyproject(*RUN)),
    c("analyze-two-outputs-one-file", f"analyze {TINY} -o {{T}}/x.json --graph {{T}}/./x.json",
      "-o writes that file too; give each output its own file"),
    c("analyze-o-empty", f"analyze {TINY} -o ''", "-o '': an empty path"),
    c("infer-o-empty", "infer {M}/tiny_ok.py -o ''", "-o '': an empty path"),
    c("sweep-o-empty", "sweep {M}/tiny_ok.py -o ''", "-o '': an empty path"),
    c("sweep-infer-o-empty", "sweep {M}/tiny_ok.py --infer -o ''", "-o '': an empty path"),
    c("report-o-empty", "report {R}/gpt2-small-h100.json -o ''", "-o '': an empty path"),
    c("plan-timeline-empty", "plan {M}/tiny_ok.py --timeline ''", "--timeline '': an empty path"),
    c("calibrate-o-folder", "calibrate -o {T}/p.yaml", "is a folder", files={"p.yaml/k": ""}),
    c("calibrate-o-not-yaml", "calibrate -o {T}/p.txt", "must end in .yaml"),
    c("calibrate-o-missing-folder", "calibrate -o {T}/x/p.yaml", "does not exist"),
    c("calibrate-o-unwritable", "calibrate -o /proc/archcost-p.yaml", "cannot create"),
    c("calibrate-no-o", "calibrate", "Missing option '--output'"),
    c("ci-summary-folder", "ci --config {T}/pyproject.toml --summary {T}", "is a folder",
      files=pyproject(*RUN)),
    # ---- calibrate options ----
    c("calibrate-device-tpu", "calibrate -o {T}/p.yaml --device tpu", "--device 'tpu'"),
    c("calibrate-nproc-zero", "calibrate -o {T}/p.yaml --nproc 0", "--nproc"),
    c("calibrate-nproc-many", "calibrate -o {T}/p.yaml --nproc 4000", "per CPU core"),
    c("calibrate-tdp-text", "calibrate -o {T}/p.yaml --tdp fast", "--tdp"),
    c("calibrate-tdp-bytes", "calibrate -o {T}/p.yaml --tdp '300 GB'", "not a power"),
    c("calibrate-tdp-negative", "calibrate -o {T}/p.yaml --tdp '-5 W'", "--tdp"),
    c("calibrate-timeout-zero", "calibrate -o {T}/p.yaml --timeout 0", "--timeout 0.0"),
    # ---- ci configuration ----
    c("ci-config-missing", "ci --config {T}/pyproject.toml", "no such file"),
    c("ci-config-not-toml", "ci --config {T}/pyproject.toml", "fix the TOML",
      files={"pyproject.toml": "[tool.archcost\n"}),
    c("ci-no-table", "ci --config {T}/pyproject.toml", "no [tool.archcost] table",
      files={"pyproject.toml": "[project]\nname = 'x'\n"}),
    c("ci-no-runs", "ci --config {T}/pyproject.toml", "no [[tool.archcost.runs]]",
      files={"pyproject.toml": "[tool.archcost]\nfail_above = '2%'\n"}),
    c("ci-run-no-model", "ci --config {T}/pyproject.toml", "missing 'model'",
      files=pyproject("name = 'a'", "kind = 'analyze'")),
    c("ci-run-unknown-key", "ci --config {T}/pyproject.toml", "unknown key(s) batch",
      files=pyproject(*RUN, "batch = 8")),
    c("ci-run-bad-kind", "ci --config {T}/pyproject.toml", "kind 'sweep'",
      files=pyproject("name = 'a'", "kind = 'sweep'", "model = 'tiny_ok.py'")),
    c("ci-run-seq-text", "ci --config {T}/pyproject.toml", "seq_len = 'long'",
      files=pyproject(*RUN, "seq_len = 'long'")),
    c("ci-run-seq-zero", "ci --config {T}/pyproject.toml", "seq_len = 0",
      files=pyproject(*RUN, "seq_len = 0")),
    c("ci-run-gpus-float", "ci --config {T}/pyproject.toml", "gpus = 8.5",
      files=pyproject(*RUN, "gpus = 8.5")),
    c("ci-run-set-not-table", "ci --config {T}/pyproject.toml", "set = 'layers=4'",
      files=pyproject(*RUN, "set = 'layers=4'")),
    c("ci-run-metrics-not-list", "ci --config {T}/pyproject.toml", "metrics = 'step_time'",
      files=pyproject(*RUN, "metrics = 'step_time'")),
    c("ci-run-hardware-and-cluster", "ci --config {T}/pyproject.toml", "both given",
      files=pyproject(*RUN, "hardware = 'h100-sxm'", "cluster = 'dgx-h100-ndr'")),
    c("ci-run-usable-zero", "ci --config {T}/pyproject.toml", "usable_memory = 0",
      files=pyproject(*RUN, "usable_memory = 0")),
    c("ci-fail-above-bad", "ci --config {T}/pyproject.toml", "'lots' is not a threshold",
      files=pyproject(*RUN, head="[tool.archcost]\nfail_above = 'lots'\n")),
    c("ci-duplicate-name", "ci --config {T}/pyproject.toml", "used twice",
      files={"pyproject.toml": CI_RUN + CI_RUN[len("[tool.archcost]\n"):]}),
    c("ci-no-baseline", "ci --config {T}/pyproject.toml", "--update-baselines",
      files=pyproject(*RUN)),
    c("ci-baseline-not-json", "ci --config {T}/pyproject.toml", "not JSON",
      files={**pyproject(*RUN), "reports/a.json": "{"}),
    c("ci-only-unknown", "ci --config {T}/pyproject.toml --only b", "not all are run names",
      files=pyproject(*RUN)),
    c("ci-run-model-missing", "ci --config {T}/pyproject.toml --update-baselines", "not found",
      files=pyproject("name = 'a'", "kind = 'analyze'", "model = 'gone.py'")),
    c("ci-run-dtype-unknown", "ci --config {T}/pyproject.toml --update-baselines",
      "is not a precision", files=pyproject(*RUN, "dtype = 'fp7'")),
    c("ci-run-recompute-unknown", "ci --config {T}/pyproject.toml --update-baselines",
      "recompute = 'half'", files=pyproject(*RUN, "recompute = 'half'")),
    c("ci-run-estimate-no-plan", "ci --config {T}/pyproject.toml --update-baselines",
      "needs plan", files=pyproject("name = 'a'", "kind = 'estimate'", "model = 'tiny_ok.py'")),
    # ---- the command line itself ----
    c("unknown-command", "analyse {M}/tiny_ok.py", "No such command 'analyse'"),
    c("unknown-option", f"analyze {TINY} --batchsize 8", "No such option: --batchsize"),
    c("missing-model-argument", "analyze", "Missing argument"),
    c("extra-argument", f"analyze {TINY} extra", "unexpected extra argument"),
    c("option-without-value", f"analyze {TINY} --seq-len", "requires an argument"),
    c("plan-unknown-option", "plan {M}/tiny_ok.py --gpuz 8", "No such option: --gpuz"),
    c("sweep-markdown-with-file", "sweep {M}/tiny_ok.py --markdown {T}/s.md",
      "unexpected extra argument"),
    c("diff-unknown-option", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json --md",
      "No such option: --md"),
    c("ci-unknown-option", "ci --summary", "requires an argument"),
    c("root-unknown-option", "--verbose analyze", "No such option: --verbose"),
    # ---- Ctrl-C: one line, exit 130, nothing written ----
    c("interrupt-analyze-builder", f"analyze {MIS} --set at=builder --set action=interrupt "
      "-o {T}/r.json", "interrupted", code=130),
    c("interrupt-analyze-forward", f"analyze {MIS} --set at=forward --set action=interrupt "
      "-o {T}/r.json --graph {T}/g.json", "interrupted", code=130),
    c("interrupt-analyze-writing", f"analyze {TINY} -o {{T}}/r.json --graph {{T}}/g.json",
      "interrupted", code=130, interrupt_at="archcost.trace.graph:graph_text"),
    c("interrupt-plan-tracing", f"plan {MIS} --set at=loss --set action=interrupt "
      "-o {T}/p.json", "interrupted", code=130),
    c("interrupt-plan-search", "plan {M}/tiny_ok.py -s 4 --gbs 8 -o {T}/p.json --timeline "
      "{T}/t.json", "interrupted", code=130, interrupt_at="archcost.plan.search:search"),
    c("interrupt-estimate", "estimate {M}/tiny_ok.py -s 4 --plan dp=2,gbs=8 -o {T}/e.json",
      "interrupted", code=130, interrupt_at="archcost.plan.evaluate:estimate_plan"),
    c("interrupt-sweep-grid", "sweep {M}/tiny_ok.py -s 4 --gbs 8 -o {T}/s.json", "interrupted",
      code=130, interrupt_at="archcost.sweep.grid:run_grid"),
    c("interrupt-validate-run", "validate {M}/tiny_ok.py -s 4 --plan mbs=1,gbs=1 --json "
      "-o {T}/v.json", "interrupted", code=130, interrupt_at="archcost.validate.step:run_steps"),
    c("interrupt-report", "report {R}/llama-70b-plan-64xh100.json -o {T}/r.html",
      "interrupted", code=130, interrupt_at="archcost.report.html:to_html"),
    c("interrupt-diff", "diff {R}/gpt2-small-h100.json {R}/gpt2-small-h100.json",
      "interrupted", code=130, interrupt_at="archcost.report.diff:diff_documents"),
    c("interrupt-ci", "ci --config {T}/pyproject.toml --update-baselines", "interrupted",
      code=130, files=pyproject(*RUN), interrupt_at="archcost.ci:produce"),
    c("interrupt-calibrate", "calibrate -o {T}/p.yaml --quick", "interrupted", code=130,
      interrupt_at="archcost.hardware.calibrate:measure"),
    c("interrupt-profiles", "profiles list", "interrupted", code=130,
      interrupt_at="archcost.hardware.profile:list_profiles"),
]


@pytest.fixture
def runner():
    """A runner that keeps stderr apart from stdout (click >= 8.2 always does)."""
    from typer.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """Bad documents, shared by the cases that read them (none may change them)."""
    d = tmp_path_factory.mktemp("bad_documents")
    (d / "notjson.json").write_text('{"kind": "analysis",')
    (d / "empty.json").write_text("")
    (d / "binary.json").write_bytes(b"\xff\xfe\x00\x01")
    (d / "list.json").write_text("[1, 2]")
    (d / "nokind.json").write_text(json.dumps({"schema_version": 1, "model": {}}))
    (d / "horoscope.json").write_text(json.dumps({"schema_version": 1, "kind": "horoscope",
                                                  "model": {"name": "x"}}))
    (d / "nomodel.json").write_text(json.dumps({"schema_version": 1, "kind": "analysis"}))
    (d / "folder.json").mkdir()
    return d


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size if p.is_file() else -1
            for p in folder.rglob("*")}


def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, runner, tmp_path, docs, monkeypatch):
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if case.interrupt_at:
        module, _, name = case.interrupt_at.partition(":")
        monkeypatch.setattr(f"{module}.{name}", _interrupt)
    before, docs_before = _tree(tmp_path), _tree(docs)
    args = shlex.split(case.args.format(T=tmp_path, M=M, MODELS=MODELS, BAD=BAD, D=docs,
                                        R=ROOT / "reports"))
    r = runner.invoke(app, args)
    lines = r.stderr.splitlines()
    assert r.exit_code == case.code, (r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == "", (r.stdout, r.stderr)
    assert _tree(tmp_path) == before, "files left behind"
    assert _tree(docs) == docs_before


def test_the_corpus_covers_every_command_and_kind_of_input():
    assert len(CASES) >= 150 and len({case.id for case in CASES}) == len(CASES)
    first = {shlex.split(case.args)[0] for case in CASES}
    assert {"analyze", "plan", "estimate", "validate", "sweep", "report", "diff", "ci",
            "calibrate", "profiles"} <= first
    shown = {shlex.split(case.args)[1] for case in CASES if case.args.startswith("profiles")}
    assert {"list", "show"} <= shown
    assert sum(case.code == 130 for case in CASES) >= 10


def test_debug_shows_the_traceback(runner):
    r = runner.invoke(app, ["analyze", str(M / "builder_raises.py"), "--debug"])
    assert r.exit_code == 2 and "Traceback" in r.stderr


# ---- real processes: the parser's usage errors and Ctrl-C ----

def _archcost() -> list[str]:
    exe = shutil.which("archcost")
    return [exe] if exe else [sys.executable, "-m", "archcost"]


def _default_sigint() -> None:  # a test runner's worker may ignore SIGINT; archcost must not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_usage_error_in_a_real_process_is_one_line(tmp_path):
    r = subprocess.run([*_archcost(), "analyze", str(M / "tiny_ok.py"), "-b", "abc"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "--batch-size" in r.stderr and "archcost analyze --help" in r.stderr
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_tracing_exits_130_and_writes_nothing(tmp_path):
    """SIGINT to a real archcost process while the model's forward runs (the model file writes
    a marker, then waits): exit 130, one line, no output file, no temporary file."""
    marker, out = tmp_path / "tracing", tmp_path / "r.json"
    proc = subprocess.Popen(
        [*_archcost(), "analyze", str(M / "misbehaves.py"), "-s", "4", "--set", "at=forward",
         "--set", "action=sleep", "--set", f"marker={marker}", "-o", str(out), "--graph",
         str(tmp_path / "g.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the model never started tracing"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.count("\n") == 1 and "interrupted" in stderr and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracing"]


# ---- a reader that closes the pipe early (archcost ... | head): a quiet exit 141 ----

@pytest.mark.parametrize("args", [
    ["profiles", "list"],
    ["diff", "{R}/gpt2-small-h100.json", "{R}/gpt2-small-h100.json"],
    ["infer", "{MODELS}/llama.py", "--set", "preset=tiny", "-i", "8", "-n", "4"],
], ids=["profiles-list", "diff", "infer"])
def test_a_closed_pipe_ends_quietly_with_141(tmp_path, args):
    """stdout is a pipe whose read end is closed before archcost starts, so its first write
    fails with EPIPE: no error line (no "sys.exit" blamed on a model file), no traceback, no
    "Exception ignored" at exit, status 141 (128 + SIGPIPE, as a shell reports `yes | head`)."""
    args = [a.format(R=ROOT / "reports", MODELS=MODELS) for a in args]
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([*_archcost(), *args], stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=300, cwd=tmp_path)
    finally:
        os.close(write)
    assert r.returncode == 141, r.stderr
    assert r.stderr == ""


def test_reports_errors_tells_a_broken_pipe_from_a_sys_exit(capsys):
    """rich's console on a broken pipe and a real sys.exit in code a command runs: the first
    ends quietly (141), the second is still the one error line blaming the sys.exit call."""
    import typer

    from archcost.cli.common import BROKEN_PIPE, out_console, reports_errors

    @reports_errors
    def exits(debug: bool = False):
        sys.exit(3)

    @reports_errors
    def pipe_closes(debug: bool = False):
        out_console.on_broken_pipe()

    with pytest.raises(typer.Exit) as stop:
        exits()
    assert stop.value.exit_code == 2
    assert "called sys.exit(3)" in capsys.readouterr().err
    quiet = out_console.quiet
    try:
        with pytest.raises(typer.Exit) as stop:
            pipe_closes()
    finally:
        out_console.quiet = quiet
    assert stop.value.exit_code == BROKEN_PIPE == 141
    assert capsys.readouterr().err == ""
