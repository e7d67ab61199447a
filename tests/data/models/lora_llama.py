"""A LoRA-wrapped Llama written as a user would without peft: the small Llama of the corpus
(tests/data/hf/llama.json, built by transformers) with every weight frozen and rank-``rank``
adapters ``W x + (alpha / rank) * B(A(x))`` on the attention's query and value projections
(Hu et al. 2021, LoRA, arXiv:2106.09685, section 4.2)."""

import json
from pathlib import Path

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

CONFIG = Path(__file__).resolve().parent.parent / "hf" / "llama.json"


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.lora_b(self.lora_a(x)) * self.scale


def build_model(rank: int = 4, alpha: float = 8.0):
    raw = json.loads(CONFIG.read_text())
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in raw.items() if k != "model_type"}))
    model.requires_grad_(False)
    for layer in model.model.layers:
        attn = layer.self_attn
        attn.q_proj = LoRALinear(attn.q_proj, rank, alpha)
        attn.v_proj = LoRALinear(attn.v_proj, rank, alpha)
    return model


def example_inputs(batch_size: int, seq_len: int, model):
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len))
    return {"input_ids": ids, "labels": ids}
