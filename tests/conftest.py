"""Shared test helpers: paths and a CLI runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DATA = Path(__file__).resolve().parent / "data"

# small instances of every bundled model, cheap enough to run for real on a CPU
TINY = {
    "seed_mlp": {},
    "gpt2": dict(layers=2, hidden=64, heads=4, vocab=256),
    "llama": dict(preset="tiny"),
    "moe": dict(preset="tiny"),
    "deepseek_v3": dict(preset="tiny"),
    "vit": dict(image_size=32, patch=8, layers=2, hidden=64, heads=4, ffn=128, classes=10),
    "resnet": dict(width=8, classes=10, image_size=32),
    "bert": dict(layers=2, hidden=64, heads=4, ffn=128, vocab=256),
    "gptj": dict(preset="tiny"),
    "falcon": dict(preset="tiny"),
}


def class_flops(g, *classes) -> int:
    """FLOPs of a graph's nodes of ``classes`` (op classes), every occurrence counted."""
    return sum(d["flops"] * d["count"] for _, d in g.nodes(data=True)
               if d["op_class"] in classes)


def load_module(path: Path):
    """Import a model file directly (model files are not a package)."""
    spec = importlib.util.spec_from_file_location(f"_t_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()
