"""The geometry under the report plots, by hand: wrapping at whole tokens, stacked segments
kept visible with the total unchanged, thin Gantt bars merged into blocks, point labels that
do not overlap. (What Chromium draws is checked in test_report.py and test_report_sweep.py.)"""

from __future__ import annotations

from itertools import combinations

import pytest

from archcost.report.gantt import Block, merge_thin
from archcost.report.layout import Box, clip, place_labels, text_width, wrap
from archcost.report.svg import stack_widths

PLAN = "#1 dp=1,tp=2,pp=4,cp=8,zero=2,sp=1,vpp=4,schedule=interleaved,mbs=2,gbs=512"


def test_text_width_of_dejavu_sans():
    # DejaVu Sans advance widths (units per em 2048): digits 1303, "m" 1995, "i" 569
    assert text_width("0123456789", 10) == pytest.approx(10 * 1303 / 2048 * 10, rel=0.01)
    assert text_width("m", 100) == pytest.approx(1995 / 2048 * 100, rel=0.01)
    assert text_width("i", 100) == pytest.approx(569 / 2048 * 100, rel=0.01)


def test_wrap_breaks_plan_strings_only_after_commas():
    lines = wrap(PLAN, 200, max_lines=10)
    assert len(lines) > 1 and all(text_width(ln) <= 200 for ln in lines)
    assert all(ln.endswith(",") for ln in lines[:-1])
    assert "".join(lines) == PLAN  # every token whole, none lost
    assert wrap(PLAN, 2000) == [PLAN]
    # past max_lines the rest is clipped, saying so
    short = wrap(PLAN, 60, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("\u2026")
    assert clip("abcdef", text_width("abc\u2026")) == "abc\u2026"


def test_stack_widths_widens_thin_segments_and_keeps_the_total():
    widths, widened = stack_widths([300.0, 0.5, 1.0, 0.0, 40.0], 2.0)
    assert widened and widths == [297.5, 2.0, 2.0, 0.0, 40.0]
    assert sum(widths) == 341.5  # the bar ends where its value says
    assert stack_widths([10.0, 5.0], 2.0) == ([10.0, 5.0], False)


def test_merge_thin_by_hand():
    bars = [(0, 0.00 + 0.03 * i, 0.01, "F", "forward") for i in range(100)] + \
           [(0, 0.01 + 0.03 * i, 0.02, "B", "backward") for i in range(100)] + \
           [(0, 5.0, 2.0, "opt", "optimizer"),      # wide: its own block
            (0, 8.0, 0.05, "a", "send"),            # thin, alone after a 1 s gap
            (1, 0.0, 0.05, "b", "send"), (1, 0.5, 0.05, "c", "send")]  # gap 0.45 >= 0.1
    blocks = merge_thin(bars, 0.1)
    assert blocks[0] == Block(0, 0.0, pytest.approx(3.0), (("forward", pytest.approx(1.0)),
                                            ("backward", pytest.approx(2.0))), 200, "")
    assert blocks[1:] == [Block(0, 5.0, 7.0, (("optimizer", 2.0),), 1, "opt"),
                          Block(0, 8.0, 8.05, (("send", 0.05),), 1, "a"),
                          Block(1, 0.0, 0.05, (("send", 0.05),), 1, "b"),
                          Block(1, 0.5, 0.55, (("send", 0.05),), 1, "c")]


def test_labels_of_points_at_one_spot_do_not_overlap():
    pts = [(300.0, 200.0, 5.0)] * 6
    labels = [[f"op class {i}"] for i in range(6)]
    area = Box(0, 0, 760, 400)
    placed = place_labels(pts, labels, 11, area)
    assert all(p is not None and p.box.inside(area) for p in placed)
    for a, b in combinations(placed, 2):
        assert not a.box.overlaps(b.box)
    # no room at all: None, for the caller to name the point elsewhere
    assert place_labels([(5.0, 5.0, 5.0)], [["too long to fit here"]], 11,
                        Box(0, 0, 20, 20)) == [None]
