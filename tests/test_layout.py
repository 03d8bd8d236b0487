"""layout.plan on its own: any size, any pane heights, any asked-for pane."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from neurontop.ui.layout import MIN_FLEX, PRIORITY, TWO_COLUMNS, VIEWS, plan

PANES = ("grid", *PRIORITY)


@settings(max_examples=300, deadline=None)
@given(st.integers(20, 320), st.integers(1, 120), st.sampled_from([None, "grid", *VIEWS]), st.booleans(),
       st.fixed_dictionaries({p: st.integers(3, 80) for p in PANES}), st.integers(0, 40))
def test_boxes_lie_in_the_body_and_never_overlap(width, height, view, asked, heights, slope) -> None:
    def natural(pane: str, w: int) -> int:  # narrower: taller (lines wrap into more rows)
        return heights[pane] + max(0, (200 - w) * slope // 200)

    boxes = plan(width, height, natural, view, asked)
    for name, b in boxes.items():
        assert b.width > 0 and b.height > 0, name
        assert 0 <= b.x and b.x + b.width <= width and 0 <= b.y and b.y + b.height <= height, (name, b)
    for (n1, a), (n2, b) in itertools.combinations(boxes.items(), 2):
        apart = a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
        assert apart, (n1, a, n2, b)
    if view in (None, "grid"):
        assert "grid" in boxes  # the overview always has the grid
    elif asked:
        assert view in boxes  # an asked-for pane is always on screen
    for flex in ("graphs", "tree"):
        if flex in boxes and flex != view:
            assert boxes[flex].height >= MIN_FLEX
    if width >= TWO_COLUMNS and view in PRIORITY:
        right = sorted((b.y, n) for n, b in boxes.items() if b.x > 0)
        assert right[0][1] == view  # first in the right column


def test_at_80x24_the_grid_and_graphs_share_the_body_and_a_key_shows_a_pane_alone() -> None:
    nat = {"grid": 11, "training": 8, "jobs": 5, "memory": 14, "interconnect": 12, "health": 6, "vcpu": 5}
    boxes = plan(80, 17, lambda p, w: nat[p])
    assert set(boxes) == {"grid", "graphs"} and boxes["graphs"].height == 6
    boxes = plan(80, 17, lambda p, w: nat[p], "jobs")
    assert set(boxes) == {"jobs", "graphs"} and boxes["jobs"].height == 5
    assert plan(80, 17, lambda p, w: nat[p], "memory")["memory"].height == 14  # (3 rows: no tree)
