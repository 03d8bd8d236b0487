"""The TUI driven with Textual's Pilot on recorded reports."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurontop.core.telemetry.sources import StreamSource
from neurontop.core.telemetry.units import clock as clock_text
from neurontop.ui.bars import TabBar
from neurontop.ui.memory_tree import MemoryTree
from neurontop.ui.screens import HelpScreen
from neurontop.ui.state import UiState
from neurontop.ui.widgets import HintsPane, InterconnectPane

from .conftest import REAL_TRN1, SAMPLE_JSONL, make_reports, needs_shared
from .ui_helpers import decoded, feed, grid_text, make_app, paused_replay


def row_values(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d)[%T]", line)]


@pytest.mark.parametrize("preset", ["trn1.2xlarge", "trn1.32xlarge", "trn2.48xlarge"])
async def test_grid_shows_the_right_percentages_for_the_right_cores(preset: str) -> None:
    samples = decoded(make_reports(preset, "straggler", 12))
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await feed(app, pilot, samples)
        s = samples[-1]
        lines = grid_text(app)
        assert lines[0].split() == [f"NC{c}" for c in range(s.cores_per_device)]
        for d in range(s.n_devices):
            row = lines[1 + d]
            assert row.startswith(f"ND{d}")
            want = [round(float(u), 1) for u in s.util[d * s.cores_per_device:(d + 1) * s.cores_per_device]]
            assert row_values(row) == pytest.approx(want, abs=0.051)
        assert f"Avg: {s.util.mean():.2f}%" in app.grid.border_title


async def test_f_toggles_tflops_and_e_shows_engines() -> None:
    samples = decoded(make_reports("trn1.2xlarge", "healthy", 5))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, samples)
        await pilot.press("f")
        row = grid_text(app)[1]
        assert row_values(row) == pytest.approx([round(float(f) / 1e12, 1) for f in samples[-1].flops], abs=0.051)
        assert "T" in row
        await pilot.press("f")
        assert "%" in grid_text(app)[1]
        await pilot.press("e")
        text = "\n".join(grid_text(app))
        assert "tensor" in text and "dma" in text and "NC1" in text
        await pilot.press("e")


async def test_p_freezes_the_display_while_data_keeps_arriving() -> None:
    samples = decoded(make_reports("trn1.2xlarge", "input_bound", 20))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, samples[:10])
        before = grid_text(app)
        await pilot.press("p")
        assert app.state is UiState.PAUSED
        await feed(app, pilot, samples[10:])
        assert grid_text(app) == before and app.latest is samples[-1]
        await pilot.press("p")
        await pilot.pause()
        assert grid_text(app) != before


async def test_tabs_tree_help_and_hints() -> None:
    samples = decoded(make_reports("trn1.32xlarge", "idle_cores", 15))
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await feed(app, pilot, samples)
        tabs = app.query_one(TabBar)
        assert tabs.tabs == ["all", "4242"]
        await pilot.press("d")
        assert tabs.active == 1 and "[2]:4242<" in tabs.render().plain
        await pilot.press("a")
        assert tabs.active == 0
        await pilot.press("2")
        assert tabs.active == 1
        await pilot.press("1")
        await pilot.press("m")  # the memory pane and its tree
        tree = app.query_one(MemoryTree)
        assert tree.display and tree.region.height >= 20
        assert not tree.is_expanded("dev", 0) and len(tree.rows()) == 16
        await pilot.press("x")
        assert all(tree.is_expanded("dev", d) for d in range(16)) and len(tree.rows()) == 16 * (1 + 2 * 6)
        await pilot.press("x")
        assert not any(tree.is_expanded("dev", d) for d in range(16))
        tree.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert tree.is_expanded("dev", 1) and not tree.is_expanded("dev", 0)
        text = tree.render().plain
        assert "▼ ND 1 · " in text and "ND1/NC0 [2] · " in text and "ND1/NC1 [3] · " in text
        await pilot.press("down", "enter", "down")
        assert tree.is_expanded("core", 2) and "Tensors" in tree.render().plain
        await pilot.click(MemoryTree, offset=(3, 1))  # the first row: ND 0
        assert tree.is_expanded("dev", 0)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        hints = app.query_one(HintsPane)
        assert hints.hints and hints.hints[0].cause == "idle_cores"
        assert "idle" in hints.render().plain
        assert app.query_one("#grid").has_class("hinted")


async def test_plain_reports_say_what_is_missing() -> None:
    from .conftest import strip_extension

    samples = decoded(strip_extension(make_reports("trn1.32xlarge", "healthy", 3)))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, samples)
        assert "do not carry it" in app.query_one(InterconnectPane).render().plain
        await pilot.press("e")
        assert "no per-engine data" in "\n".join(grid_text(app))


@needs_shared
@pytest.mark.parametrize("path, devices, cpd", [(SAMPLE_JSONL, 16, 4), (REAL_TRN1, 1, 2)])
async def test_stdin_source_renders_every_core(path, devices: int, cpd: int) -> None:
    src = StreamSource(io.BytesIO(path.read_bytes()), "stdin")
    app = make_app(source=src, source_label="stdin")
    async with app.run_test(size=(200, 60)) as pilot:
        for _ in range(50):
            await pilot.pause(0.05)
            if app.state is UiState.ENDED:
                break
        app.dirty = True
        app._render_if_dirty()
        lines = grid_text(app)
        assert lines[0].split() == [f"NC{c}" for c in range(cpd)]
        assert [ln.split()[0] for ln in lines[1:1 + devices]] == [f"ND{d}" for d in range(devices)]
        assert all(len(row_values(ln)) == cpd for ln in lines[1:1 + devices])
        assert app.state is UiState.ENDED


async def test_tiny_terminal_does_not_crash() -> None:
    samples = decoded(make_reports("trn2.48xlarge", "healthy", 3))
    app = make_app()
    async with app.run_test(size=(40, 10)) as pilot:
        await feed(app, pilot, samples)
        await pilot.press("f", "e", "x")
        await pilot.pause()
        assert app.is_running


async def test_replay_keys_move_the_clock(tmp_path) -> None:
    samples = decoded(make_reports("trn1.2xlarge", "healthy", 60))
    clock, app = paused_replay(samples)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.latest is samples[0]
        await pilot.press("right_square_bracket")
        assert clock.index == 1 and app.latest.seq == samples[1].seq
        await pilot.press("right")
        assert clock.index == 11
        await pilot.press("end")
        assert clock.at_end and app.state is UiState.REPLAY_END
        await pilot.press("home")
        assert clock.index == 0
        await pilot.press("greater_than_sign")
        assert clock.speed == 2
        await pilot.press("j")
        await pilot.press(*"0:30", "enter")
        await pilot.pause()
        assert clock.index == 30
        assert len(app.history.rings["util_avg"]) == 31  # history derived from the samples before
        np.testing.assert_allclose(app.history.rings["util_avg"].values()[-1], samples[30].avg_util)


async def test_after_a_jump_the_totals_say_what_they_count() -> None:
    """A seek rebuilds the history from the 600 reports before the cursor: the health pane's totals
    then count those, and say so, and a runtime seen before them is at least that old."""
    from neurontop.ui.panels import HealthPane, JobsPane

    samples = decoded(make_reports("trn1.2xlarge", "hw_errors", 640))
    clock, app = paused_replay(samples)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        await pilot.press("end")  # sample 639: the history holds samples 39-639
        await pilot.pause()
        app._render_if_dirty()
        counted = sum(s.ecc_corrected for s in samples[39:])
        span = samples[-1].time_s - samples[39].time_s
        health = app.query_one(HealthPane).render().plain
        assert f"({counted:.0f} in the last {round(span / 60)} min)" in health and "since start" not in health, health
        jobs = app.query_one(JobsPane).render().plain
        assert f"≥{clock_text(span)}" in jobs, jobs
        await pilot.press("home")  # from the first report again: totals since the start
        await pilot.press("right")
        await pilot.pause()
        app._render_if_dirty()
        health = app.query_one(HealthPane).render().plain
        assert "since start" in health and "in the last" not in health, health
        assert "≥" not in app.query_one(JobsPane).render().plain


async def test_r_records_to_a_profile_with_hint_events(tmp_path) -> None:
    from neurontop.core.store.profile import Profile
    from neurontop.core.store.recorder import Recorder

    samples = decoded(make_reports("trn1.2xlarge", "idle_cores", 30))
    lines = make_reports("trn1.2xlarge", "idle_cores", 30)
    path = tmp_path / "live.ntprof"
    app = make_app(recorder_factory=lambda: Recorder(str(path)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        assert app.header.recording == str(path)
        for line, s in zip(lines, samples, strict=True):  # what the source worker does
            app.recorder.append(line, s)
            await feed(app, pilot, [s])
        await pilot.press("r")
        assert app.recorder is None and "saved" in app.header.note
    prof = Profile(str(path))
    assert len(prof) == 30
    assert any(k == "hint" and d.get("cause") == "idle_cores" for _, k, d in prof.events())


async def test_unwritable_record_folder_keeps_the_live_view(tmp_path) -> None:
    from neurontop.core.store.recorder import Recorder

    app = make_app(recorder_factory=lambda: Recorder(str(tmp_path / "missing" / "x.ntprof")))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        assert app.recorder is None and "cannot record" in app.header.note
        await feed(app, pilot, decoded(make_reports("trn1.2xlarge", "healthy", 3)))
        assert app.is_running


def test_command_source_reads_a_programs_stdout(tmp_path) -> None:
    from neurontop.core.telemetry.sources import CommandSource, Line, Status

    log = tmp_path / "r.jsonl"
    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "healthy", 4)) + b"\n")
    events = list(CommandSource(f"cat {log}").events())
    assert isinstance(events[0], Status) and events[0].state == "connected"
    assert sum(isinstance(e, Line) for e in events) == 4
    assert events[-1].state == "ended" and "status 0" in events[-1].detail
    bad = list(CommandSource("/no/such/neuron-monitor").events())
    assert bad[-1].state == "error"


async def test_garbage_in_the_stream_is_skipped_and_reported() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 4)
    data = b"\n".join([lines[0], b"this is not json", lines[1], b'{"neuron_runtime_data": [{"pid": "x"}]}',
                       lines[2], lines[3]]) + b"\n"
    app = make_app(source=StreamSource(io.BytesIO(data), "stdin"), source_label="stdin")
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(50):
            await pilot.pause(0.05)
            if app.state is UiState.ENDED:
                break
        assert app.bad_lines == 2 and "2 bad reports skipped" in app.header.note
        assert app.latest is not None and app.is_running
        assert len(app.history.rings["util_avg"]) == 4


def test_sparkline_levels_gaps_and_padding() -> None:
    from neurontop.ui.render import sparkline

    assert sparkline(np.array([0.0, 50.0, 100.0, np.nan, 200.0]), 5, 0.0, 100.0) == " ▄█ █"
    assert sparkline(np.array([1.0, 2.0]), 4) == "  ▄█"  # scaled to its own maximum, right-aligned
    assert sparkline(np.array([]), 3) == "   "
    # a small non-zero value still shows (the lowest bar); zero and gaps stay blank
    assert sparkline(np.array([0.0, 4.9, np.nan, 0.5]), 4, 0.0, 100.0) == " ▁ ▁"


async def test_panes_draw_their_frame_exactly_as_textual_does() -> None:
    """Panes wrap a cached frame around their lines instead of Textual's per-line styling, and
    the screen and containers hand back cached lines; the lines must be the ones Textual draws,
    in every state (plain, focused, pointed at by a hint, retitled, resized)."""
    from textual.geometry import Region
    from textual.widget import Widget

    from neurontop.ui.pane import Pane, ReusedLines

    samples = decoded(make_reports("trn1.32xlarge", "input_bound", 30))
    app = make_app()

    def check() -> int:
        fast = 0
        for pane in app.query(Pane):
            w, h = pane.region.size
            if not w or not h:
                continue
            if pane._frame_cache is None:
                pane._frame_cache = pane._make_frame()
            fast += bool(pane._frame_cache)
            ours = [list(s) for s in pane.render_lines(Region(0, 0, w, h))]
            pane._styles_cache.clear()
            theirs = [list(s) for s in Widget.render_lines(pane, Region(0, 0, w, h))]
            bad = [y for y, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
            assert ours == theirs, (type(pane).__name__, bad)
            part = [list(s) for s in pane.render_lines(Region(3, 1, w - 5, h - 1))]
            assert part == [list(s.crop(3, w - 2)) for s in Widget.render_lines(pane, Region(0, 1, w, h - 1))]
        # The screen, containers and bars hand back their cached lines: the ones Textual draws.
        others = [w for w in [app.screen, *app.screen.walk_children()]
                  if isinstance(w, ReusedLines) and not isinstance(w, Pane)]
        assert {"_Screen", "_Body", "TabBar", "KeyLegend"} <= {type(w).__name__ for w in others}
        for widget in others:
            w, h = widget.region.size
            if not w or not h:
                continue
            ours = [list(s) for s in widget.render_lines(Region(0, 0, w, h))]
            widget._styles_cache.clear()
            assert ours == [list(s) for s in Widget.render_lines(widget, Region(0, 0, w, h))], type(widget).__name__
        return fast

    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, samples[:10])
        assert check() >= 6  # grid, graphs, training, jobs, memory, health (and the header) take the fast path
        app.grid.focus()
        await pilot.pause()
        app.grid.set_class(True, "hinted")
        await feed(app, pilot, samples[10:20])
        check()
        await pilot.resize_terminal(200, 60)
        await feed(app, pilot, samples[20:])
        check()


@given(st.lists(st.tuples(st.text(alphabet=st.sampled_from("ab █▏·…─│ND0%漢字🙂\u0301"), max_size=12),
                          st.sampled_from([None, "bold", "red"])), max_size=6),
       st.integers(min_value=1, max_value=40))
@settings(max_examples=300, deadline=None)
def test_fit_makes_lines_exactly_as_wide_as_asked(parts, width: int) -> None:
    """`fit` measures most lines by length (one-cell characters only) and the rest cell by cell;
    either way the line is exactly `width` cells, cut with an ellipsis as Rich would cut it."""
    from rich.cells import cell_len
    from rich.segment import Segment
    from rich.style import Style

    from neurontop.ui.pane import fit

    segs = [Segment(t, Style.parse(s) if s else None) for t, s in parts]
    out = fit(segs, width)
    assert sum(cell_len(seg.text) for seg in out) == width
    whole = "".join(seg.text for seg in segs)
    text = "".join(seg.text for seg in out)
    if cell_len(whole) <= width:
        assert text.startswith(whole) and text[len(whole):] == " " * (width - cell_len(whole))
    else:
        assert text.endswith("…")


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_textuals_public_path_draws_the_same_screen(size, monkeypatch) -> None:
    """textual_compat: on another Textual (here: forced) every internal is left alone, and the
    screen is the same as with the pinned Textual's fast paths."""
    from neurontop.ui import textual_compat as tc

    samples = decoded(make_reports("trn1.32xlarge", "straggler", 15))
    shots, frames = [], []
    for private in (True, False):
        monkeypatch.setattr(tc, "PRIVATE", private)
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await feed(app, pilot, samples)
            shots.append(re.sub(r"terminal-\d+", "T", app.export_screenshot()))
            frames.append(app.grid._frame_cache)
    assert frames[0] and frames[1] == ()  # the fast frame ran, then did not
    assert shots[0] == shots[1]


def test_textual_is_pinned_to_the_version_the_compat_module_knows() -> None:
    from pathlib import Path

    from neurontop.ui import textual_compat as tc

    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert re.findall(r'"textual([=<>!~][^"]*)"', text) == [f"=={tc.PINNED}"]
    assert tc.TEXTUAL == tc.PINNED and tc.PRIVATE  # (CI installs the pin)


async def test_a_wrong_jump_keeps_the_prompt_open_with_its_error_and_compound_times_work() -> None:
    from neurontop.ui.screens import JumpScreen

    samples = decoded(make_reports("trn1.2xlarge", "healthy", 100))
    clock, app = paused_replay(samples)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("j", *"abc", "enter")
        await pilot.pause()
        assert isinstance(app.screen, JumpScreen)  # still asking
        assert "not a time" in str(app.screen.query_one("#jump-error").render())
        for _ in range(3):
            await pilot.press("backspace")
        await pilot.press(*"1m10s", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, JumpScreen) and clock.index == 70
        await pilot.press("j", *"-1m", "enter")
        await pilot.pause()
        assert clock.index == 10
        for _ in range(4):
            await pilot.press("less_than_sign")
        assert clock.speed == 1 / 16 and "1/16x" in str(app.timeline.render())


async def test_help_names_every_key_in_words() -> None:
    app = make_app(replay=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        from rich.console import Console

        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#help-body Static").content)
        text = console.export_text()
        assert "select that runtime's tab" in text and "select_tab(" not in text and "1-9" in text


@needs_shared
async def test_the_header_and_the_timeline_tell_the_same_replay_time_and_rec_shows_the_file_name() -> None:
    samples = decoded(REAL_TRN1.read_bytes().splitlines())  # plain reports: the header shows their time
    clock, app = paused_replay(samples)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("end")
        await pilot.pause()
        header = app.header.render().plain
        shown = re.search(r"(\d\d:\d\d:\d\d) / ", app.timeline.render().plain).group(1)
        assert f" {shown} · " in header and "t=" not in header
        graphs = app.graphs.render().plain.splitlines()
        axis = next(ln for ln in graphs if ln.lstrip().startswith("└"))
        assert axis.rstrip().endswith(shown)  # the graphs end at the cursor, told as the timeline tells it
        app.header.recording = "/a/very/long/folder/for/recordings/neuron-top-20261202-010203.ntprof"
        assert " neuron-top-20261202-010203.ntprof" in app.header.render().plain
        assert "/a/very/long" not in app.header.render().plain


@pytest.mark.parametrize("preset,size,per_line", [("trn1.32xlarge", (80, 24), 2), ("trn2.48xlarge", (80, 24), 2),
                                                  ("trn1.32xlarge", (120, 40), 1)])
async def test_every_device_fits_the_grid_on_a_short_terminal(preset, size, per_line) -> None:
    """80x24 shows all 16 devices (two per line, the grid's bottom border on screen); a terminal
    tall enough keeps a line each. A click selects the device under it in either layout."""
    samples = decoded(make_reports(preset, "healthy", 3))
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await feed(app, pilot, samples)
        lines = grid_text(app)
        assert app.grid.per_line() == per_line
        assert sum(f"ND{d} " in "\n".join(lines) for d in range(16)) == 16
        assert len(lines) == 1 + 16 // per_line
        region = app.grid.region
        assert region.y + region.height <= size[1] - 4  # the bottom border above the hints and keys
        await pilot.click("#grid", offset=(region.width - 10, 2))  # the second line, its last group
        assert app.grid.selected == (2 if per_line == 2 else 1) + (per_line - 1)


async def test_the_memory_summary_shows_the_hosts_ram_beside_the_runtimes_own() -> None:
    """`Host Total` is the runtimes' host memory (as AWS neuron-top shows it); the host's RAM, used
    and installed, is on a line of its own (512 GiB on trn1.32xlarge), from system_data, which plain
    reports carry too."""
    from neurontop.ui.widgets import MemoryPane

    from .conftest import strip_extension

    samples = decoded(make_reports("trn1.32xlarge", "healthy", 2))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, samples)
        text = app.query_one(MemoryPane).render().plain
        assert "Host   Total" in text and "of 512.0GiB used on the host" in text
    assert samples[-1].host_mem_total == 512 * 2**30
    plain = decoded(strip_extension(make_reports("trn1.32xlarge", "healthy", 2)))
    assert all(s.host_mem_total > 0 for s in plain)  # (system_data carries it in plain reports too)


async def test_help_at_80x24_scrolls_visibly_and_says_what_the_colours_mean() -> None:
    from rich.console import Console

    app = make_app(replay=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        box = app.screen.query_one("#help-body")
        assert app.screen.region.contains_region(app.screen.query_one("#help").region)
        assert box.max_scroll_y > 0 and box.show_vertical_scrollbar  # longer than the screen: a scrollbar
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_y > 0
        console = Console(width=80, record=True, file=io.StringIO())
        for st in app.screen.query("Static"):
            console.print(st.content)
        text = console.export_text()
        assert "green from 70 %" in text and "heavy red" in text and "graphs pane" in text
        assert "esc or ? closes" in text  # (outside the scrolled part: always on screen)


async def test_pane_keys_time_base_jobs_order_and_the_health_pane() -> None:
    from neurontop.ui.panels import GraphsPane, HealthPane, JobsPane

    samples = decoded(make_reports("trn1.32xlarge", "hw_errors", 20))
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot, samples)
        graphs, jobs = app.query_one(GraphsPane), app.query_one(JobsPane)
        assert app.grid.display and not jobs.display  # (the hint takes the rows the graphs would have)
        await pilot.press("w")  # the jobs pane in the body; the grid is one key away
        assert jobs.display and not app.grid.display
        text = jobs.render().plain
        assert "4242" in text and "0-31" in text and "by pid (o)" in str(jobs.border_title)
        await pilot.press("o")
        jobs.render()
        assert "by cores (o)" in str(jobs.border_title)
        await pilot.press("2")  # the runtime's tab: its row is marked, the memory pane shows its devices
        app._render_if_dirty()
        assert "▶" in jobs.render().plain
        app.memory_pane.render()
        assert "runtime 4242 (16 devices)" in str(app.memory_pane.border_title)
        await pilot.press("escape")
        assert app.grid.display and not jobs.display
        await pilot.press("h")
        health = app.query_one(HealthPane).render()
        assert "ECC" in health.plain and "since start" in health.plain and "of 512.0GiB" in health.plain
        assert re.search(r"ECC by dev +ND\d+ \d+", health.plain), health.plain  # the faulty device, by name
        assert any("yellow" in str(sp.style) or "red" in str(sp.style) for sp in health.spans), "ECC is coloured"
        await pilot.press("h", "g")
        assert graphs.display and "last 1 min" in str(graphs.border_title)
        await pilot.press("b")
        assert "last 10 min" in str(graphs.border_title)
        await pilot.press("b")
        assert "last 20 s" in str(graphs.border_title)  # everything kept: 20 reports of 1 s


@needs_shared
async def test_the_training_and_graphs_panes_on_plain_neuron_monitor_reports_say_what_is_missing() -> None:
    from neurontop.ui.panels import GraphsPane, TrainingPane

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, decoded(SAMPLE_JSONL.read_bytes().splitlines()))
        training = app.query_one(TrainingPane).render().plain
        assert "not in this telemetry" in training and "executions/s" in training
        assert "not in this telemetry: " in app.query_one(GraphsPane).render().plain


async def test_a_short_grid_leaves_its_rows_to_the_hint_so_its_action_is_on_screen() -> None:
    samples = decoded(make_reports("trn1.2xlarge", "input_bound", 15, seed=7))
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot, samples)
        await pilot.pause()
        hints = app.query_one(HintsPane)
        # its 8 wrapped lines and border: more than 40 % of the screen, the rows the 4-row grid leaves
        assert hints.region.height == 10, hints.region
        assert app.grid.display and app.screen.region.contains_region(hints.region)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_hints_that_do_not_fit_are_named_on_a_last_line_not_cut_off(size) -> None:
    import dataclasses

    samples = decoded(make_reports("trn1.32xlarge", "input_bound", 15, seed=7))
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await feed(app, pilot, samples)
        hp = app.query_one(HintsPane)
        assert hp.hints
        h = hp.hints[0]
        many = [dataclasses.replace(h, cause=f"c{k}", title=f"cause number {k}") for k in range(5)]
        hp.set_hints(many, 30.0, 70.0, {"input_pipeline": 25.0})
        await pilot.pause()
        lines = hp.render().plain.splitlines()
        # every line on screen, inside the border, within the rows the layout gives the pane
        assert len(hp._lines) == hp.region.height - 2 <= hp.room == app._hints_max - 2
        assert app.screen.region.contains_region(hp.region)
        assert lines[-1].startswith("+") and "more: " in lines[-1]
        shown = [k for k in range(5) if f"cause number {k}" in "\n".join(lines[:-1])]
        assert shown == list(range(len(shown))) and shown  # whole hints first, in order
        hidden = int(lines[-1][1:].split()[0])
        assert hidden == 5 - len(shown)
        assert sum(line.lstrip().startswith("→") for line in lines) == len(shown)  # each shown hint's action


async def test_a_long_source_label_keeps_its_end_in_the_header() -> None:
    """A cluster's node view: the socket's name tells the nodes apart, so a long path loses its middle."""
    label = "socket /tmp/pytest-of-root/pytest-145/test_cluster_view_finds_the_sl0/cl/node-05.sock"
    app = make_app(source_label=label)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, decoded(make_reports("trn1.32xlarge", "healthy", 3)))
        first = app.query_one("#header").render().plain.splitlines()[0]
        assert first.endswith("/cl/node-05.sock") and "socket …" in first, first
        assert len(first) <= 120
