"""Inference documents (``archcost infer -o``) and inference sweeps (``archcost sweep --infer
-o``) through schema, report, diff and sweep: real documents of the tiny Llama, figures checked
against the hardware profile's datasheet numbers and closed forms (roofline, latency and
throughput identities, memory parts), the sweep's points against ``archcost infer`` at the
same setting, the trace memo against a count of traces, corrupted documents refused in one
line, and pages rendered by headless Chromium."""

from __future__ import annotations

import copy
import json

import pytest

from archcost.cli import app
from archcost.report import diff_documents, fmt, load_document, schema, to_html, to_markdown
from tests._infer_docs import GENERATION, LLAMA, infer_docs  # noqa: F401 (fixture)
from tests._layout import measure, problems
from tests._report_docs import HOSTILE, load
from tests.test_report import assert_tables, render_dom
from tests.test_report_sweep import sweeps  # noqa: F401 (fixture)

jsonschema = pytest.importorskip("jsonschema")


def _valid_outside(doc) -> list:
    s = schema.load_schema(doc["kind"], 1)
    return list(jsonschema.Draft202012Validator(s).iter_errors(doc))


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text


# ---------------------------------------------------------------- schema

def test_infer_and_infer_sweep_documents_validate(infer_docs):  # noqa: F811
    for name in ("infer", "sweep"):
        doc = load(infer_docs[name])
        schema.check(doc, name)
        assert _valid_outside(doc) == [], name
    assert load(infer_docs["infer"])["kind"] == "inference"
    assert load(infer_docs["sweep"])["mode"] == "inference"


CORRUPT = {
    "ttft-string": ("infer", lambda d: d["inference"].update(ttft_s="fast"),
                    "$.inference.ttft_s: expected a number >= 0, found the string 'fast'; "
                    "regenerate it with archcost infer -o"),
    "no-inference": ("infer", lambda d: d.pop("inference"),
                     "$.inference: missing, expected an object"),
    "bound": ("infer", lambda d: d["inference"]["phases"]["decode"].update(bound="fast"),
              "$.inference.phases.decode.bound: expected one of 'memory', 'compute'"),
    "negative-kv": ("infer", lambda d: d["inference"]["memory_bytes"].update(kv_cache=-1),
                    "$.inference.memory_bytes.kv_cache: expected a number >= 0"),
    "fits-string": ("infer", lambda d: d["inference"].update(fits="yes"),
                    "$.inference.fits: expected true or false, found the string 'yes'"),
    "sweep-point-tpot": ("sweep", lambda d: d["points"][1].pop("tpot_s"),
                         "$.points[1].tpot_s: missing, expected a number >= 0 or null; "
                         "regenerate it with archcost sweep -o"),
    "sweep-base": ("sweep", lambda d: d["base"].pop("input_len"),
                   "$.base.input_len: missing, expected an integer >= 1"),
    "sweep-mode": ("sweep", lambda d: d.update(mode="serving"),
                   "$.mode: expected one of 'training', 'inference'"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupted_inference_documents_are_refused(runner, tmp_path, infer_docs, case):  # noqa: F811
    name, mutate, message = CORRUPT[case]
    good = load(infer_docs[name])
    bad = copy.deepcopy(good)
    mutate(bad)
    path, ok = tmp_path / f"{case}.json", tmp_path / "good.json"
    path.write_text(json.dumps(bad))
    ok.write_text(json.dumps(good))
    for args in (["report", str(path)], ["diff", str(ok), str(path)],
                 ["diff", str(path), str(ok)]):
        _one_line_exit_2(runner.invoke(app, args), f"{path}: ", message)
    assert _valid_outside(bad), "jsonschema accepts it"


def test_a_training_sweep_point_is_still_held_to_the_training_schema(infer_docs):  # noqa: F811
    """``mode: inference`` switches the point schema; without it an inference point is no
    training point (it has no plan), so the two cannot be mixed up."""
    doc = load(infer_docs["sweep"])
    doc.pop("mode")
    with pytest.raises(Exception, match=r"\$\.base\.cluster: missing"):
        schema.check(doc, "x.json")
    assert _valid_outside(doc)


# ---------------------------------------------------------------- figures

def test_the_phases_sit_on_the_h100_roofline(infer_docs):  # noqa: F811
    """Ridge point and roofs from the H100 profile's datasheet figures (bf16 dense peak at the
    sustained clock over HBM bandwidth), intensity as FLOPs over bytes, attainable as
    min(peak, intensity x bandwidth), achieved as FLOPs over the step time."""
    from archcost.hardware.profile import load_gpu

    gpu = load_gpu("h100-sxm")
    peak = gpu.peak_flops_per_s["bf16"] * gpu.sustained_clock
    bw = gpu.mem_bw_bytes_per_s
    doc = load(infer_docs["infer"])
    assert doc["hardware"]["mem_bw_bytes_per_s"] == bw
    for name, ph in doc["inference"]["phases"].items():
        ai = ph["flops_per_gpu"] / ph["bytes_per_gpu"]
        assert ph["arithmetic_intensity"] == pytest.approx(ai, rel=1e-12), name
        assert ph["ridge_point_flop_per_byte"] == pytest.approx(peak / bw, rel=1e-12)
        assert ph["peak_flops_per_s"] == pytest.approx(peak, rel=1e-12)
        assert ph["attainable_flops_per_s"] == pytest.approx(min(peak, ai * bw), rel=1e-12)
        assert ph["achieved_flops_per_s"] == pytest.approx(
            ph["flops_per_gpu"] / ph["seconds"], rel=1e-12)
        assert ph["bound"] == ("memory" if ai < peak / bw else "compute")
    # a decode step of a 2-sequence batch reads every weight for two tokens: memory-bound
    assert doc["inference"]["phases"]["decode"]["bound"] == "memory"


def test_markdown_report_of_an_inference_document(infer_docs):  # noqa: F811
    doc = load_document(infer_docs["infer"])
    inf = doc["inference"]
    md = to_markdown(doc)
    tables = assert_tables(md)
    assert set(tables) == {"Summary", "Phases on the roofline (per GPU)",
                           "Time per output token by context", "Memory per GPU"}
    summary = {r[0].strip(): r[1].strip() for r in tables["Summary"]}
    assert summary["time to first token (TTFT)"] == fmt.seconds(inf["ttft_s"])
    assert summary["time per output token (TPOT, mean)"] == fmt.seconds(inf["tpot_s"])
    assert summary["output tokens/s per GPU"] == fmt.si(inf["output_tokens_per_s_per_gpu"])
    assert summary["memory per GPU: KV cache"] == fmt.nbytes(inf["memory_bytes"]["kv_cache"])
    assert summary["largest batch that fits"] == fmt.count(inf["max_batch"])
    # closed forms: e2e = TTFT + (n - 1) TPOT; throughput = batch x n / e2e; peak = sum of parts
    n, b = inf["output_len"], inf["batch"]
    assert inf["e2e_s"] == pytest.approx(inf["ttft_s"] + (n - 1) * inf["tpot_s"], rel=1e-12)
    assert inf["output_tokens_per_s"] == pytest.approx(b * n / inf["e2e_s"], rel=1e-12)
    m = inf["memory_bytes"]
    assert m["peak_per_gpu"] == pytest.approx(m["weights"] + m["kv_cache"] + m["activations"])
    contexts = [r[0].strip() for r in tables["Time per output token by context"]]
    assert contexts == [fmt.count(r["context"]) for r in inf["tpot_by_context"]]
    # the decode contexts run over the generation: input_len + 1 .. input_len + n - 1
    assert inf["tpot_by_context"][0]["context"] == inf["input_len"] + 1
    assert inf["tpot_by_context"][-1]["context"] == inf["input_len"] + n - 1


def test_html_report_plots_of_an_inference_document(infer_docs, tmp_path):  # noqa: F811
    doc = load_document(infer_docs["infer"])
    inf = doc["inference"]
    page = to_html(doc)
    for pid in ("inference-tpot", "inference-roofline", "inference-memory"):
        assert f'data-plot="{pid}"' in page, pid
    roofline = page.split('data-plot="inference-roofline"')[1].split("</figure>")[0]
    ridge = inf["phases"]["prefill"]["ridge_point_flop_per_byte"]
    assert f"ridge at {fmt.sig(ridge)} FLOP/B" in roofline
    assert "memory-bound" in roofline and "prefill" in roofline
    tpot = page.split('data-plot="inference-tpot"')[1].split("</figure>")[0]
    for r in inf["tpot_by_context"]:  # one point per context, its figure in the tooltip
        assert f"context {fmt.count(r['context'])}: {fmt.seconds(r['seconds'])}" in tpot
    memory = page.split('data-plot="inference-memory"')[1].split("</figure>")[0]
    for label in ("weights", "KV cache", "activations"):
        assert label in memory


def test_one_output_token_has_no_tpot_and_no_decode_step(runner, tmp_path, infer_docs):  # noqa: F811
    """-n 1: the one token comes out of the prefill, so no decode step runs: no TPOT (null,
    valid under the published schema), e2e = TTFT, no decode phase in the tables, the roofline
    or by context; the CLI table and the report say "-"; a diff against 8 tokens, either way
    round, does not compare TPOT (not a +inf regression) and notes why."""
    path, doc = _infer_doc(runner, tmp_path, "n1", "-b", "2", "--hardware", "h100-sxm",
                           "-n", "1")
    inf = doc["inference"]
    assert inf["output_len"] == 1 and inf["tpot_s"] is None
    assert not _valid_outside(doc)
    assert inf["e2e_s"] == inf["ttft_s"] and inf["tpot_by_context"] == []
    assert list(inf["phases"]) == ["prefill"]
    tables = assert_tables(to_markdown(load_document(path)))
    summary = {r[0].strip(): r[1].strip() for r in tables["Summary"]}
    assert summary["time per output token (TPOT, mean)"] == "-"
    assert [r[0].strip() for r in tables["Phases on the roofline (per GPU)"]] == ["prefill"]
    page = to_html(load_document(path))
    assert 'data-plot="inference-tpot"' not in page
    roofline = page.split('data-plot="inference-roofline"')[1].split("</figure>")[0]
    assert "prefill" in roofline and "decode" not in roofline
    cli = runner.invoke(app, ["infer", *LLAMA, "-i", "16", "-n", "1"])
    assert "- (one output token: no decode step)" in cli.output and "decode @" not in cli.output
    eight = infer_docs["infer"]  # the same generation with 8 output tokens
    assert load(eight)["inference"]["tpot_s"] > 0
    for base, head, side in ((path, eight, "BASE"), (eight, path, "HEAD")):
        r = runner.invoke(app, ["diff", str(base), str(head), "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        tpot = next(row for row in res["rows"] if row["metric"] == "tpot")
        assert tpot["status"] == "n/a" and not tpot["regressed"] and tpot["relative"] is None
        assert "tpot" not in res["watched"] and "tpot" not in res["regressions"]
        assert f"tpot: {side} has one output token (no decode step); not compared" in res["notes"]


@pytest.mark.parametrize("name, plots", [  # hostile names; text overlaps, cut text, thin bars
    ("infer", {"inference-tpot", "inference-roofline", "inference-memory"}),
    ("sweep", {"sweep-tpot", "sweep-ttft", "sweep-tokens-per-gpu"}),
])
def test_chromium_renders_inference_pages(infer_docs, tmp_path, name, plots):  # noqa: F811
    doc = load(infer_docs[name])
    doc["model"]["name"] = HOSTILE
    page = tmp_path / "report.html"
    page.write_text(to_html(doc), encoding="utf-8")
    dom, console = render_dom(page, tmp_path / "profile")
    assert not console, "\n".join(console)
    assert "<script" not in dom.lower()
    for pid in plots:
        assert f'data-plot="{pid}"' in dom, pid
    figs = measure(to_html(load(infer_docs[name])), tmp_path)
    assert {f["id"] for f in figs} == plots
    assert not problems(figs), "\n".join(problems(figs))


# ---------------------------------------------------------------- diff

def _scaled(doc, **factors):
    out = copy.deepcopy(doc)
    for key, f in factors.items():
        if key == "peak":
            out["inference"]["memory_bytes"]["peak_per_gpu"] *= f
        else:
            out["inference"][key] *= f
    return out


@pytest.mark.parametrize("change, regressed", [
    ({"tpot_s": 1.05}, ["tpot"]),
    ({"tpot_s": 1.01}, []),                         # within the 2% threshold
    ({"ttft_s": 0.9}, []),                          # an improvement
    ({"ttft_s": 1.03, "peak": 1.5}, ["ttft", "memory.peak"]),
    ({"output_tokens_per_s_per_gpu": 0.97}, ["tokens_per_s_per_gpu"]),
])
def test_diff_of_inference_documents(infer_docs, change, regressed):  # noqa: F811
    base = load_document(infer_docs["infer"])
    result = diff_documents(base, _scaled(base, **change))
    assert sorted(r.metric for r in result.regressions) == sorted(regressed)
    assert result.exit_code == (1 if regressed else 0)


def test_diff_cli_fails_when_a_batch_stops_fitting(runner, tmp_path, infer_docs):  # noqa: F811
    base = load(infer_docs["infer"])
    head = copy.deepcopy(base)
    head["inference"]["fits"] = False
    path = tmp_path / "head.json"
    path.write_text(json.dumps(head))
    r = runner.invoke(app, ["diff", str(infer_docs["infer"]), str(path)])
    assert r.exit_code == 1, r.output
    assert "fits" in r.output.split("REGRESSION")[1]
    same = runner.invoke(app, ["diff", str(infer_docs["infer"]), str(infer_docs["infer"])])
    assert same.exit_code == 0, same.output


def test_diff_refuses_an_inference_sweep_against_a_training_sweep(runner, infer_docs,  # noqa: F811
                                                                  sweeps):  # noqa: F811
    r = runner.invoke(app, ["diff", str(infer_docs["sweep"]), str(sweeps["one"])])
    _one_line_exit_2(r, "BASE is an inference sweep and HEAD a training sweep: compare sweeps "
                        "of the same mode")
    r = runner.invoke(app, ["diff", str(sweeps["one"]), str(infer_docs["sweep"])])
    _one_line_exit_2(r, "BASE is a training sweep and HEAD an inference sweep: compare sweeps "
                        "of the same mode")


def test_diff_shows_the_capacity_in_requests_per_s_and_readme_lists_the_watched(runner,
                                                                                tmp_path):
    """continuous.capacity is a rate of requests: its cells carry the unit; README's table of
    watched metrics names every continuous-batching metric a diff watches by default."""
    from pathlib import Path

    from archcost.report.diff import DEFAULT_METRICS, format_value

    path, doc = _infer_doc(runner, tmp_path, "rate", "--rate", "20")
    head = copy.deepcopy(doc)
    head["inference"]["continuous"]["capacity_per_s"] *= 0.5
    row = next(r for r in diff_documents(doc, head).rows if r.metric == "continuous.capacity")
    assert row.status == "worse"
    capacity = doc["inference"]["continuous"]["capacity_per_s"]
    assert format_value(row.base, row.unit) == f"{fmt.si(capacity)} req/s"
    path_head = tmp_path / "head.json"
    path_head.write_text(json.dumps(head))
    md = runner.invoke(app, ["diff", str(path), str(path_head), "--markdown"]).output
    line = next(x for x in md.splitlines() if x.startswith("| continuous.capacity |"))
    assert f"| {fmt.si(capacity)} req/s | {fmt.si(capacity / 2)} req/s |" in line, line
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    watched = next(x for x in readme.splitlines()  # the row of the watched-metrics table
                   if x.startswith("| `inference` | `fits`"))
    continuous = [m for m in DEFAULT_METRICS["inference"] if m.startswith("continuous.")]
    assert len(continuous) == 4
    for metric in continuous:
        assert f"`{metric}`" in watched, metric


def test_diff_refuses_inference_documents_of_other_modes(runner, tmp_path, infer_docs):  # noqa: F811
    """Static batching, continuous batching at a rate and a serving search watch different
    metrics: either way round, one line naming both modes, exit 2 (not a REGRESSION of the
    metrics one lacks)."""
    rate, _ = _infer_doc(runner, tmp_path, "rate", "--rate", "20")
    search, _ = _infer_doc(runner, tmp_path, "search", "--gpus", "2", "--hardware",
                           "dgx-h100-ndr", "--ttft-slo", "500ms", "--tpot-slo", "50ms",
                           "--precisions", "bf16")
    static = infer_docs["infer"]
    modes = {static: "static batching", rate: "continuous batching (--rate)",
             search: "a serving search (--gpus)"}
    for base, head in ((static, search), (search, static), (static, rate), (rate, static),
                       (rate, search)):
        r = runner.invoke(app, ["diff", str(base), str(head)])
        _one_line_exit_2(r, f"BASE prices {modes[base]} and HEAD {modes[head]}: compare "
                            "inference documents of the same mode")
    for same in (rate, search):
        assert runner.invoke(app, ["diff", str(same), str(same)]).exit_code == 0


def test_diff_notes_the_settings_two_inference_documents_differ_in(runner, tmp_path,
                                                                   infer_docs):  # noqa: F811
    """Batch 2 on an H100 (the fixture) against batch 4 on an A100: a note names both
    settings on each side, and only those; the same document has no note."""
    head, _ = _infer_doc(runner, tmp_path, "a100", "-b", "4", "--hardware", "a100-sxm-80gb")
    note = ("different settings: BASE batch=2, gpu=h100-sxm, cluster=h100-sxm; HEAD batch=4, "
            "gpu=a100-sxm-80gb, cluster=a100-sxm-80gb")
    r = runner.invoke(app, ["diff", str(infer_docs["infer"]), str(head), "--json"])
    assert r.exit_code in (0, 1), r.output
    assert json.loads(r.stdout)["notes"] == [note]
    r = runner.invoke(app, ["diff", str(infer_docs["infer"]), str(head)])
    assert "note: " + note in " ".join(r.output.split()), r.output
    same = runner.invoke(app, ["diff", str(infer_docs["infer"]), str(infer_docs["infer"])])
    assert "note:" not in same.output, same.output


def test_diff_of_inference_sweeps_point_by_point(infer_docs):  # noqa: F811
    base = load_document(infer_docs["sweep"])
    head = copy.deepcopy(base)
    p = next(p for p in head["points"] if p["point"] == {"batch": "2",
                                                         "hardware": "a100-sxm-80gb"})
    p["tpot_s"] *= 1.10
    result = diff_documents(base, head)
    assert [r.metric for r in result.regressions] == ["tpot@batch=2@hardware=a100-sxm-80gb"]
    assert diff_documents(base, base).exit_code == 0


# ---------------------------------------------------------------- sweep

def test_sweep_points_are_what_infer_prices(infer_docs):  # noqa: F811
    """The sweep's H100 point at batch 2 is the infer document's setting: the same figures;
    every point keeps the latency and throughput identities and names its hardware."""
    sweep, one = load(infer_docs["sweep"]), load(infer_docs["infer"])["inference"]
    assert [a["key"] for a in sweep["axes"]] == ["batch", "hardware"]
    assert sweep["grid_points"] == len(sweep["points"]) == 4
    p = next(p for p in sweep["points"] if p["point"] == {"batch": "2", "hardware": "h100-sxm"})
    for key in ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s",
                "output_tokens_per_s_per_gpu", "max_batch", "fits"):
        assert p[key] == pytest.approx(one[key], rel=1e-12), key
    assert p["peak_per_gpu_bytes"] == pytest.approx(one["memory_bytes"]["peak_per_gpu"])
    for p in sweep["points"]:
        b, n = int(p["point"]["batch"]), p["output_len"]
        assert p["batch"] == b and p["gpu"] == p["point"]["hardware"]
        assert p["e2e_s"] == pytest.approx(p["ttft_s"] + (n - 1) * p["tpot_s"], rel=1e-12)
        assert p["output_tokens_per_s_per_gpu"] == pytest.approx(b * n / p["e2e_s"], rel=1e-12)
    # more memory bandwidth, same model: the memory-bound decode is faster on the H100
    by = {(q["point"]["batch"], q["point"]["hardware"]): q for q in sweep["points"]}
    assert by[("2", "h100-sxm")]["tpot_s"] < by[("2", "a100-sxm-80gb")]["tpot_s"]


def test_one_trace_memo_serves_the_grid(monkeypatch):
    """Hardware and batch change no trace: after one point is priced, the rest of a
    batch x hardware grid traces nothing again."""
    import archcost.infer.price as price
    from archcost.cli.infer import one_replica_cluster
    from archcost.loader import load_model_file, parse_overrides
    from archcost.runtime import load_runtime
    from archcost.sweep.axes import parse_vary
    from archcost.sweep.infer_grid import run_infer_grid

    calls = []
    real = price.capture_inference

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(price, "capture_inference", counting)
    spec = load_model_file(LLAMA[0], parse_overrides(LLAMA[2:]))
    base = {"hardware": "h100-sxm", "tp": 1, "pp": 1, "batch": 1, "input_len": 16,
            "output_len": 8, "dtype": "bf16", "usable_memory": 0.9}
    memo: dict = {}
    kw = dict(spec=spec, base=base, cluster_for=one_replica_cluster,
              runtime=load_runtime("eager"), memo=memo)
    run_infer_grid([], **kw)
    first = len(calls)
    assert first > 0 and len(set(calls)) == first  # each step traced once
    grid = run_infer_grid(parse_vary(["batch=1,4,16", "hardware=h100-sxm,a100-sxm-80gb,cpu"]),
                          **kw)
    assert len(calls) == first and grid["grid_points"] == 9
    # memory shrunk below the weights: priced all the same, marked as not fitting
    small = run_infer_grid(parse_vary(["mem_capacity=0.3MB,1GB"]), **kw)["points"]
    assert len(calls) == first
    for p in small:
        usable = 0.9 * {"0.3MB": 0.3e6, "1GB": 1e9}[p["point"]["mem_capacity"]]
        assert p["fits"] == (p["peak_per_gpu_bytes"] <= usable)
    assert [p["fits"] for p in small] == [False, True]
    assert small[0]["max_batch"] == 0 and small[0]["tpot_s"] == small[1]["tpot_s"]
    run_infer_grid(parse_vary(["input_len=24"]), **kw)  # another length: new traces
    assert len(calls) > first


@pytest.mark.parametrize("axis", ["link_bw=2x", "net_bw=2x", "link_latency=2x",
                                  "net_latency=0.5x", "scaleup_domain=4,8"])
def test_a_link_axis_of_a_lone_gpu_is_refused(runner, axis):
    """A GPU profile has no links: varying one is refused in one line naming a cluster (as a
    training sweep refuses a GPU profile), the default h100-sxm as much as a named one."""
    key = axis.partition("=")[0]
    for hardware in ([], ["--hardware", "a100-sxm-80gb"]):
        r = runner.invoke(app, ["sweep", *LLAMA, "--infer", "-i", "8", "-n", "4", *hardware,
                                "--vary", axis])
        _one_line_exit_2(r, f"--vary {key}:", "is one GPU, with no links to vary",
                         "--hardware dgx-h100-ndr")


def test_a_lone_gpu_point_of_a_link_grid_is_refused_before_any_trace(monkeypatch):
    """The grid's clusters are built before anything is traced: a link figure at a point whose
    hardware is one GPU is refused though the first point (a cluster) could be priced, and a
    cluster's one-GPU replica takes the figure (its links carry no traffic at tp 1, as at one
    GPU of a training sweep)."""
    import archcost.infer.price as price
    from archcost.cli.infer import one_replica_cluster
    from archcost.errors import ConfigError
    from archcost.loader import load_model_file, parse_overrides
    from archcost.runtime import load_runtime
    from archcost.sweep.axes import parse_vary
    from archcost.sweep.infer_grid import run_infer_grid

    def no_trace(*_args, **_kwargs):
        raise AssertionError("traced before the grid was checked")

    monkeypatch.setattr(price, "capture_inference", no_trace)
    spec = load_model_file(LLAMA[0], parse_overrides(LLAMA[2:]))
    base = {"hardware": "dgx-h100-ndr", "tp": 1, "pp": 1, "batch": 1, "input_len": 8,
            "output_len": 4, "dtype": "bf16", "usable_memory": 0.9}
    kw = dict(spec=spec, base=base, cluster_for=one_replica_cluster,
              runtime=load_runtime("eager"))
    with pytest.raises(ConfigError, match="h100-sxm is one GPU, with no links to vary"):
        run_infer_grid(parse_vary(["hardware=dgx-h100-ndr,h100-sxm", "net_bw=2x"]), **kw)
    monkeypatch.undo()
    points = run_infer_grid(parse_vary(["link_bw=1x,2x"]), **kw)["points"]
    assert [p["cluster"] for p in points] == ["dgx-h100-ndr"] * 2
    assert points[0]["tpot_s"] == points[1]["tpot_s"] > 0


@pytest.mark.parametrize("args, message", [
    (["--vary", "batch=1,2"], "--vary batch: an inference axis; add --infer"),
    (["--infer", "--vary", "gbs=8,16"], "--vary gbs: not an inference axis; with --infer vary "
                                        "batch, input_len, output_len"),
    (["--infer", "--gpus", "8"], "--gpus: options of a training sweep, not of --infer"),
    # what only the training sweep reads, given (at its default too: -s 1024, --objective time)
    (["--infer", "-s", "64"], "--seq-len: options of a training sweep, not of --infer"),
    (["--infer", "-s", "1024"], "--seq-len: options of a training sweep"),
    (["--infer", "--optimizer", "sgd"], "--optimizer: options of a training sweep"),
    (["--infer", "--objective", "time"], "--objective: options of a training sweep"),
    (["--infer", "--objective", "cost", "--rerank", "3", "--no-sensitivity"],
     "--objective, --rerank, --sensitivity/--no-sensitivity: options of a training sweep"),
    (["--batch", "4"], "--batch: options of an inference sweep; add --infer"),
    (["--infer", "--dtype", "fp8"], "--dtype 'fp8': inference prices bf16, fp16, fp32"),
])
def test_sweep_mode_options_are_checked(runner, args, message):
    r = runner.invoke(app, ["sweep", *LLAMA, *args])
    _one_line_exit_2(r, message)


def test_inference_sweep_report(infer_docs, runner):  # noqa: F811
    doc = load_document(infer_docs["sweep"])
    tables = assert_tables(to_markdown(doc))
    rows = tables["Grid: generation at every point"]
    assert len(rows) == 4
    for row, p in zip(rows, doc["points"]):
        row = [c.strip() for c in row]
        assert row[:2] == [p["point"]["batch"], p["point"]["hardware"]]
        assert row[2:4] == [fmt.seconds(p["ttft_s"]), fmt.seconds(p["tpot_s"])]
    r = runner.invoke(app, ["report", str(infer_docs["sweep"]), "-f", "md"])
    assert r.exit_code == 0 and "most tokens/s per GPU" in r.output, r.output


def _infer_doc(runner, tmp_path, name, *args):
    path = tmp_path / f"{name}.json"
    r = runner.invoke(app, ["infer", *LLAMA, *GENERATION, *args, "-o", str(path)])
    assert r.exit_code == 0, r.output
    return path, load(path)


def test_diff_watches_continuous_batching_and_the_serving_search(runner, tmp_path):
    """A continuous run's p90 latencies, throughput and queue verdict, and a search's best
    throughput within the SLOs and how many configurations meet them, are watched: a 5 % worse
    p90 TTFT, a queue that stops being stable, a best plan 10 % slower each fail the diff; the
    same document does not."""
    path, doc = _infer_doc(runner, tmp_path, "rate", "--rate", "50")
    assert doc["inference"]["continuous"]["stable"] is True
    slower = copy.deepcopy(doc)
    slower["inference"]["continuous"]["ttft"]["p90_s"] *= 1.05
    assert [r.metric for r in diff_documents(doc, slower).regressions] == ["continuous.ttft.p90"]
    growing = copy.deepcopy(doc)
    growing["inference"]["continuous"]["stable"] = False
    assert [r.metric for r in diff_documents(doc, growing).regressions] == ["continuous.stable"]
    assert diff_documents(doc, copy.deepcopy(doc)).exit_code == 0
    path, doc = _infer_doc(runner, tmp_path, "search", "--gpus", "2", "--hardware",
                           "dgx-h100-ndr", "--ttft-slo", "1s", "--precisions", "bf16")
    worse = copy.deepcopy(doc)
    best = next(e for e in worse["search"]["ranked"] if e["meets_slo"])
    best["output_tokens_per_s_per_gpu"] *= 0.9
    head = tmp_path / "head.json"
    head.write_text(json.dumps(worse))
    r = runner.invoke(app, ["diff", str(path), str(head)])
    assert r.exit_code == 1 and "best.tokens_per_s_per_gpu" in r.output.split("REGRESSION")[1]
    assert runner.invoke(app, ["diff", str(path), str(path)]).exit_code == 0


def test_continuous_batching_of_one_output_token_has_no_tpot(runner, tmp_path):
    """--rate with -n 1: no request decodes, so the continuous TPOT percentiles are null (valid
    under the schema), shown "-" by the CLI and the report, and a diff against 8 tokens does not
    compare them (not a regression from 0 s)."""
    path, doc = _infer_doc(runner, tmp_path, "r1", "--rate", "20", "-n", "1")
    cont = doc["inference"]["continuous"]
    assert cont["tpot"] is None and cont["ttft"]["p90_s"] > 0
    assert not _valid_outside(doc)
    tables = assert_tables(to_markdown(load_document(path)))
    (row,) = [r for t in tables.values() for r in t if r[0].strip() == "time per output token"]
    assert [c.strip() for c in row[1:]] == ["-", "-", "-"]
    eight, _ = _infer_doc(runner, tmp_path, "r8", "--rate", "20", "-n", "8")
    r = runner.invoke(app, ["diff", str(path), str(eight), "--json"])
    res = json.loads(r.stdout)
    rows = {row["metric"]: row for row in res["rows"]}
    assert rows["continuous.tpot.p90"]["status"] == "n/a"
    assert "continuous.tpot.p90" not in res["regressions"]


def test_a_serving_search_of_one_output_token_ranks_plans_without_a_tpot(runner, tmp_path):
    """--gpus with -n 1: each plan's one token comes out of its prefill, so the ranked plans
    and the front carry no TPOT (null, valid, "-" in the report), not 0 s."""
    path, doc = _infer_doc(runner, tmp_path, "s1", "--gpus", "2", "--ttft-slo", "500ms",
                           "--tpot-slo", "50ms", "-n", "1")
    search = doc["search"]
    assert search["ranked"] and all(e["tpot_s"] is None for e in search["ranked"])
    assert all(e["tpot_s"] is None for e in search["pareto_front"])
    assert not _valid_outside(doc)
    assert "-" in to_markdown(load_document(path))
