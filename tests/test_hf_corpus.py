"""A corpus of real models: small configs of each family ``transformers`` ships, analysed through
``archcost analyze hf:CONFIG --json`` (and a LoRA-wrapped Llama written in plain code, as a user
without peft would) and checked against one real CPU training step of the same model
(tests/groundtruth.py): parameters exact (numel of the real model, all and trainable), matmul and
convolution FLOPs equal to FlopCounterMode's (plus the closed form of grouped GEMMs, which it
counts as 0), fused-attention FLOPs equal to the closed form on the real run's attention shapes
(FlopCounterMode counts CPU attention as 0), saved activations within 1% of what autograd saves
in the real step (``saved_tensors_hooks``, distinct storages). Each model's FLOPs, bytes and saved
activations are the same traced with repeated blocks deduped and with ``--no-dedupe``, also for
deeper variants whose repeated layers split into sub-groups by their settings (Swin's shifted
windows, Gemma 2's sliding layers).

The configs (tests/data/hf/*.json) are 2 layers of width 32-64 so that a real step takes well
under a second; every family's distinguishing parts are kept (GQA, sliding windows, soft-capping,
MoE routers and shared experts, MLA, relative position buckets, cross-attention, log-mel
convolutions, patch and window attention, depthwise convolutions, selective scans).
"""

from __future__ import annotations

import json

import pytest

from archcost.cli import app
from archcost.loader import load_model_file
from tests.conftest import DATA
from tests.groundtruth import real_step_counts

HF = DATA / "hf"
B, S = 2, 16
# family -> config file in tests/data/hf
CORPUS = {
    "Llama": "llama", "Mistral": "mistral", "Qwen2": "qwen2", "Qwen3": "qwen3",
    "Gemma 2": "gemma2", "Gemma 3": "gemma3", "Phi-3": "phi3", "GPT-NeoX": "gpt_neox",
    "Falcon": "falcon", "T5": "t5", "BART": "bart", "Whisper": "whisper", "CLIP": "clip",
    "ViT": "vit", "Swin": "swin", "ConvNeXt": "convnext", "ResNet": "resnet",
    "EfficientNet": "efficientnet", "Mamba": "mamba", "BERT": "bert", "RoBERTa": "roberta",
    "DistilBERT": "distilbert", "Mixtral": "mixtral", "Qwen2-MoE": "qwen2_moe",
    "OLMoE": "olmoe", "DeepSeek-V3": "deepseek_v3",
}
# NB: a real step routes its tokens as its random router says, the trace as balanced routing
# assumes; the expert GEMMs' FLOPs are the same either way (every token reaches top_k experts of
# equal size, however they split), so the real step is the oracle for both.
MOE = {"Mixtral", "Qwen2-MoE", "OLMoE", "DeepSeek-V3"}
# deeper variants where a repeated layer's members differ in a setting and split into sub-groups
# of more than one: Swin's shifted and unshifted blocks, Gemma 2's sliding and global layers
DEEPER = {"Swin, 4 blocks": ("swin", "depths=[2,4]"),
          "Gemma 2, 4 layers": ("gemma2", "num_hidden_layers=4")}
# family -> model file in tests/data/models (transformers models wrapped in the user's own code)
WRAPPED = {"LoRA (Llama)": "lora_llama.py"}


def _analyze(runner, target: str, *extra: str) -> dict:
    r = runner.invoke(app, ["analyze", target, "-b", str(B), "-s", str(S), "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _class_flops(doc: dict, *classes: str) -> int:
    return sum(c["flops"] for c in doc["op_classes"] if c["class"] in classes)


def _totals(doc: dict) -> dict:
    t = doc["totals"]
    return {"flops": t["flops"], "bytes": t["bytes"],
            "saved": t["memory_bytes"]["activations_saved"]}


def _target(family: str) -> str:
    if family in WRAPPED:
        return str(DATA / "models" / WRAPPED[family])
    return f"hf:{HF / CORPUS[family]}.json"


@pytest.mark.parametrize("family", sorted({**CORPUS, **WRAPPED}))
def test_corpus_model_matches_a_real_training_step(family, runner):
    target = _target(family)
    doc = _analyze(runner, target)
    real = real_step_counts(load_model_file(target), B, S)
    assert doc["totals"]["params"] == real["params"]
    assert doc["totals"]["trainable_params"] == real["trainable_params"]
    assert _class_flops(doc, "matmul", "conv") == real["matmul_conv_flops"]
    assert _class_flops(doc, "attention") == real["attention_flops"]
    if family in MOE:  # the routing assumption is stated in the document
        routing = doc["capture"]["assumptions"]["routing"]
        assert routing["assumption"] == "balanced" and routing["routers"]
    saved = doc["totals"]["memory_bytes"]["activations_saved"]
    assert saved == pytest.approx(real["saved_bytes"], rel=0.01)
    # tracing one member of each repeated group costs exactly what tracing every block does
    assert _totals(doc) == _totals(_analyze(runner, target, "--no-dedupe"))


@pytest.mark.parametrize("case", sorted(DEEPER))
def test_deeper_models_dedupe_sub_groups_and_agree_with_no_dedupe(case, runner):
    name, setting = DEEPER[case]
    target = f"hf:{HF / name}.json"
    dedup = _analyze(runner, target, "--set", setting)
    full = _analyze(runner, target, "--set", setting, "--no-dedupe")
    assert sorted(g["count"] for g in dedup["capture"]["repeated_blocks"].values()) == [2, 2]
    assert _totals(dedup) == _totals(full)
