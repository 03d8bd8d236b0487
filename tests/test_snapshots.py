"""SVG snapshots at fixed terminal sizes (pytest-textual-snapshot): four machines, each healthy (no
hint) and with a hint showing, at 80x24, 120x40 and 200x60; and the layout's promise at every one
of those sizes: every pane inside the screen, no two overlapping (from Textual's regions).

Update after an intended UI change with: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import itertools

import pytest

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import get_preset

from .ui_helpers import decoded, feed, make_app

SIZES = [(80, 24), (120, 40), (200, 60)]
MACHINES = {"trn1.2xlarge": ("trn1.2xlarge", None), "trn1.32xlarge": ("trn1.32xlarge", None),
            "trn2.48xlarge": ("trn2.48xlarge", None), "trn2.48xlarge-lnc1": ("trn2.48xlarge", 1)}
HINTED = {"trn1.2xlarge": "input_bound", "trn1.32xlarge": "comm_bound", "trn2.48xlarge": "straggler",
          "trn2.48xlarge-lnc1": "hbm_bound"}


def reports(machine: str, scenario: str, count: int = 15) -> list[bytes]:
    preset, lnc = MACHINES[machine]
    eng = Engine(SimConfig(get_preset(preset, lnc), scenario=scenario, seed=7, numerics=False))
    return [encode(eng.step_window()) for _ in range(count)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", ["healthy", "hinted"])
@pytest.mark.parametrize("machine", list(MACHINES))
def test_screen_snapshot(snap_compare, machine: str, scenario: str, size: tuple[int, int]) -> None:
    name = HINTED[machine] if scenario == "hinted" else "healthy"
    samples = decoded(reports(machine, name))
    app = make_app(source_label=f"sim {machine} {name}")

    async def run_before(pilot) -> None:
        await feed(app, pilot, samples)
        await pilot.pause()
        if scenario == "hinted":
            assert app.hints, f"{name} on {machine} shows no hint"
        else:
            assert not app.hints

    assert snap_compare(app, terminal_size=size, run_before=run_before)


VIEWS = [None, "graphs", "training", "jobs", "memory", "interconnect", "health", "vcpu"]


@pytest.mark.parametrize(("machine", "view"), [(m, None) for m in MACHINES] + [("trn2.48xlarge", v) for v in VIEWS[1:]])
async def test_panes_stay_inside_the_screen_and_never_overlap(machine: str, view: str | None) -> None:
    samples = decoded(reports(machine, HINTED[machine], 12))
    app = make_app()
    async with app.run_test(size=SIZES[0]) as pilot:
        await feed(app, pilot, samples)
        for w, h in SIZES:
            await pilot.resize_terminal(w, h)
            await pilot.pause()
            if view is not None and app.view != view:
                await pilot.press(app_key(view))
            app.dirty = True
            app._render_if_dirty()
            await pilot.pause()
            screen = app.screen.region
            shown = [wd for wd in app.screen.walk_children() if wd.display and wd.id and wd.region.area
                     and wd.id != "body" and wd.parent is not None and wd.parent.id in ("body", "_default", None)]
            ids = {wd.id for wd in shown}
            assert {"grid", "hints", "tabs", "legend", "header"} <= ids or view is not None, (w, h, ids)
            assert "hints" in ids, "the hints pane keeps its place at every size"
            if view is not None:
                assert view in ids, (w, h, view, ids)
            for wd in shown:
                assert screen.contains_region(wd.region), (w, h, wd.id, wd.region)
                if wd.id in ("graphs", "grid"):  # sized to their box: nothing cut off at the bottom
                    assert len(wd.render().plain.splitlines()) <= wd.content_region.height, (w, h, wd.id)
            for a, b in itertools.combinations(shown, 2):
                assert not a.region.overlaps(b.region), (w, h, a.id, a.region, b.id, b.region)


def app_key(view: str) -> str:
    from neurontop.ui.app import NeuronTopApp

    return next(b.key for b in NeuronTopApp.BINDINGS if getattr(b, "action", "") == f"view('{view}')")
