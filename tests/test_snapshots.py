"""SVG snapshots at fixed terminal sizes for three presets (pytest-textual-snapshot).

Update after an intended UI change with: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from .conftest import make_reports
from .ui_helpers import decoded, feed, make_app

SIZES = [(80, 24), (120, 40), (200, 60)]
SCENARIO = {"trn1.2xlarge": "input_bound", "trn1.32xlarge": "comm_bound", "trn2.48xlarge": "straggler"}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("preset", ["trn1.2xlarge", "trn1.32xlarge", "trn2.48xlarge"])
def test_screen_snapshot(snap_compare, preset: str, size: tuple[int, int]) -> None:
    samples = decoded(make_reports(preset, SCENARIO[preset], 15, seed=7))
    app = make_app(source_label=f"sim {preset} {SCENARIO[preset]}")

    async def run_before(pilot) -> None:
        await feed(app, pilot, samples)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
