"""benchmarks/gemm_probe.py times the TensorRT-LLM rows' GEMMs on a GPU at shapes it writes
out by hand: here each family's shapes, times the row's tensor parallelism, hold exactly the
weights of one block's linear layers and the LM head of the bundled model built with the row's
dims (on the meta device), and the engine prices each GEMM it read."""

from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import MODELS, ROOT, load_module

probe = load_module(ROOT / "benchmarks" / "gemm_probe.py")
import inference_published as published  # noqa: E402 (on the path the probe puts benchmarks/ on)

# the H100 rows' models as inference_cases.csv gives them (name, layers, hidden, heads, kv heads,
# ffn, vocab, tensor parallelism)
_FAMILIES = [("GPT-J 6B", 28, 4096, 16, 16, 16384, 50400, 1),
             ("LLaMA 7B", 32, 4096, 32, 32, 11008, 32000, 1),
             ("LLaMA 70B", 80, 8192, 64, 8, 28672, 32000, 4),
             ("Falcon 180B", 80, 14848, 232, 8, 59392, 65024, 8)]
_KEYS = ("model", "layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "tp")


def test_each_familys_shapes_hold_the_models_linear_weights():
    for family in _FAMILIES:
        row = {k: str(v) for k, v in zip(_KEYS, family, strict=True)}
        file, sets, _ = published._model(row)
        with torch.device("meta"):
            model = load_module(MODELS / file).build_model(**sets)
        block = model.layers[0] if hasattr(model, "layers") else model.blocks[0]
        weights = [p.numel() for n, p in block.named_parameters()
                   if p.dim() == 2 and n.endswith("weight")]
        # the head's weight, or the embedding's where the head is tied to it (Falcon)
        head = {p.numel() for p in model.parameters()
                if p.dim() == 2 and p.shape[0] == int(row["vocab"])}
        assert len(head) == 1, row["model"]
        head = head.pop()
        shapes = probe.linears(row)
        tp = int(row["tp"])
        assert shapes[-1][0] == "lm_head" and shapes[-1][1] * shapes[-1][2] * tp == head
        assert sum(n * k for _, n, k in shapes[:-1]) * tp == sum(weights), row["model"]


def test_the_plan_takes_each_rows_decode_batch_and_prefill_tokens():
    row = {"model": "LLaMA 7B", "hidden": "4096", "heads": "32", "kv_heads": "32",
           "ffn": "11008", "vocab": "32000", "tp": "1", "gpu": "H100-SXM-80GB", "batch": "64",
           "input_len": "128", "metric": "output_tokens_per_s_total"}
    ttft = {**row, "batch": "1", "input_len": "2048", "metric": "first_token_latency_ms"}
    a100 = {**row, "gpu": "A100-SXM-80GB", "batch": "3"}
    ms = {m for _, _, _, m, _, _ in probe.plan([row, ttft, a100])}
    assert ms == {64, 64 * 128, 2048}


def test_pricing_a_probe_file(tmp_path):
    path = tmp_path / "gemms.csv"
    path.write_text("model,tp,linear,m,n,k,dtype,seconds,tflops\n"
                    "X,1,qkv,8192,8192,8192,bf16,1e-3,1100\n"
                    "X,1,attn_out,8192,8192,8192,fp8,5e-4,2200\n"
                    "X,1,lm_head,64,32000,4096,bf16,1e-4,0\n")
    lines = probe.price_table(str(path), "h100-sxm")
    assert len(lines) == 4  # header, rule, one line per dtype; the LM head left out
    from archcost.hardware.profile import load_gpu
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    s_bf16, s_fp8, _ = probe.priced(rows, load_gpu("h100-sxm"))
    # an 8192^3 GEMM is compute-bound: fp8 runs at twice bf16's dense peak on an H100
    assert s_bf16 / s_fp8 == pytest.approx(2.0, rel=0.25)
    assert f"{s_bf16 / 1e-3:.2f} |" in lines[2]


@pytest.mark.parametrize("text, says", [
    (None, "cannot read"), ("a,b\n1,2\n", "is not a CSV this script wrote")])
def test_pricing_a_missing_or_foreign_file_is_one_line(tmp_path, monkeypatch, capsys, text,
                                                       says):
    path = tmp_path / "gemms.csv"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr("sys.argv", ["gemm_probe.py", "--price", str(path)])
    with pytest.raises(SystemExit) as info:
        probe.main()
    msg = str(info.value.code)
    assert msg.startswith("error: ") and says in msg and "\n" not in msg
