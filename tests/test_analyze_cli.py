"""`archcost analyze` end to end: JSON document, graph export, formulas, output files."""

from __future__ import annotations

import json

import networkx as nx
import sympy

from archcost.analysis import phase_flops
from archcost.cli import app
from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS

GPT_TINY = ["--set", "layers=2", "--set", "hidden=64", "--set", "heads=4", "--set", "vocab=256"]


def test_json_document_has_the_promised_keys(runner, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["analyze", str(MODELS / "gpt2.py"), *GPT_TINY, "-b", "2", "-s", "16",
                              "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert json.loads(out.read_text()) == doc
    assert doc["schema_version"] == 1
    t = doc["totals"]
    for key in ("forward", "backward", "optimizer", "total"):
        assert isinstance(t["flops"][key], int)
    assert t["flops"]["total"] == sum(t["flops"][k] for k in ("forward", "backward", "optimizer", "recompute"))
    assert set(t["bytes"]) == {"read", "written"}
    for key in ("weights", "gradients", "optimizer_states", "activations_saved"):
        assert t["memory_bytes"][key] > 0
    assert t["params"] == t["trainable_params"] > 0
    assert doc["modules"][0]["path"] == "" and doc["op_classes"]
    assert doc["ops_without_rule"] == []
    assert doc["capture"]["method"] == "fake-dispatch"
    assert doc["capture"]["repeated_blocks"]["layers.0"]["count"] == 2


def test_graph_export_graphml_and_json(runner, tmp_path):
    gml, js = tmp_path / "g.graphml", tmp_path / "g.json"
    for path, extra in ((gml, []), (js, ["--per-layer"])):
        res = runner.invoke(app, ["analyze", str(MODELS / "gpt2.py"), *GPT_TINY, "-s", "8",
                                  "--graph", str(path), *extra])
        assert res.exit_code == 0, res.output
    g = nx.read_graphml(gml)
    assert g.number_of_nodes() > 100 and g.number_of_edges() > 100
    ops = {d["op"] for _, d in g.nodes(data=True)}
    assert "aten.addmm" in ops
    data = json.loads(js.read_text())
    expanded = nx.node_link_graph(data, edges="edges")
    # expanded per layer: every node stands for one execution, and FLOPs are unchanged
    assert all(d["count"] == 1 for _, d in expanded.nodes(data=True) if d["repeat_group"])
    spec = load_model_file(str(MODELS / "gpt2.py"), dict(layers=2, hidden=64, heads=4, vocab=256))
    traced = trace_model(spec, 1, 8, parse_precision("fp32"))
    assert phase_flops(expanded) == phase_flops(traced.graph)


def test_symbolic_formulas_predict_an_unseen_size(runner):
    res = runner.invoke(app, ["analyze", str(MODELS / "gpt2.py"), *GPT_TINY, "-s", "32",
                              "--symbolic", "--json"])
    assert res.exit_code == 0, res.output
    formulas = json.loads(res.output)["symbolic"]["formulas"]
    b, s = sympy.symbols("b s", positive=True, integer=True)
    spec = load_model_file(str(MODELS / "gpt2.py"), dict(layers=2, hidden=64, heads=4, vocab=256))
    t = trace_model(spec, 5, 40, parse_precision("fp32"))  # a size not used by the fit
    fl = phase_flops(t.graph)
    for phase in ("forward", "backward", "optimizer", "total"):
        expr = sympy.sympify(formulas[f"flops_{phase}"], locals={"b": b, "s": s})
        assert expr.subs({b: 5, s: 40}) == fl[phase]
    saved = sympy.sympify(formulas["activations_saved_bytes"], locals={"b": b, "s": s})
    assert saved.subs({b: 5, s: 40}) == sum(t.capture.saved.values())
    # attention makes forward FLOPs quadratic in s
    fwd = sympy.sympify(formulas["flops_forward"], locals={"b": b, "s": s})
    assert sympy.Poly(fwd, b, s).degree(s) == 2


def test_rich_output_names_each_section(runner):
    res = runner.invoke(app, ["analyze", str(MODELS / "seed_mlp.py")])
    assert res.exit_code == 0, res.output
    for needle in ("parameters", "FLOPs forward", "modules", "op classes",
                   "ops without a FLOP rule", "repeated blocks"):
        assert needle in res.output
