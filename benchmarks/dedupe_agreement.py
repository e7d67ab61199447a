"""Benchmark: repeated-block dedupe against ``--no-dedupe`` on every model of the test corpus.

For each model of tests/test_hf_corpus.py (small configs built through transformers, and the
LoRA-wrapped Llama), ``archcost analyze MODEL --json`` runs with and without ``--no-dedupe`` in
one process; the table shows forward / backward / optimizer FLOPs, bytes read and written and
saved-activation bytes of both, the models that disagree, and each trace's wall time.

    python benchmarks/dedupe_agreement.py [--out BENCHMARKS.md] [FAMILY ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from archcost.cli import app  # noqa: E402
from tests.test_hf_corpus import CORPUS, WRAPPED, B, S, _target  # noqa: E402

FIELDS = ("fwd", "bwd", "opt", "read", "written", "saved")


def figures(doc: dict) -> dict[str, int]:
    t = doc["totals"]
    return {
        "fwd": t["flops"]["forward"],
        "bwd": t["flops"]["backward"],
        "opt": t["flops"]["optimizer"],
        "read": t["bytes"]["read"],
        "written": t["bytes"]["written"],
        "saved": t["memory_bytes"]["activations_saved"],
    }


def analyze(runner: CliRunner, target: str, *extra: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = runner.invoke(app, ["analyze", target, "-b", str(B), "-s", str(S), "--json", *extra])
    if r.exit_code != 0:
        raise SystemExit(f"{target}: {r.output}")
    return json.loads(r.stdout), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("families", nargs="*", help="default: the whole corpus")
    args = ap.parse_args()
    runner = CliRunner()
    families = args.families or sorted({**CORPUS, **WRAPPED})
    lines = [f"## Dedupe against --no-dedupe on the test corpus (b={B}, s={S})", "",
             "| model | groups | " + " | ".join(f"{f} dedupe / full" for f in FIELDS)
             + " | s dedupe / full |",
             "|---|---|" + "---|" * (len(FIELDS) + 1)]
    disagree = []
    for fam in families:
        doc, t_d = analyze(runner, _target(fam))
        full, t_f = analyze(runner, _target(fam), "--no-dedupe")
        a, b = figures(doc), figures(full)
        groups = doc["capture"].get("repeated_blocks", {})
        desc = ", ".join(f"{g['members']}->x{g['count']}"
                         + (f" ({len(g['traced_in_full'])} full)" if g["traced_in_full"] else "")
                         for g in groups.values()) or "-"
        cells = [f"{a[f]:,} / {b[f]:,}" + ("" if a[f] == b[f] else " **≠**") for f in FIELDS]
        lines.append(f"| {fam} | {desc} | " + " | ".join(cells) + f" | {t_d:.2f} / {t_f:.2f} |")
        if a != b:
            disagree.append(fam)
    lines += ["", "Disagree: " + (", ".join(disagree) if disagree else "none")]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
