"""The cluster view: a row per node (state, utilisation and a per-core strip, HBM, EFA, step time,
its own top finding) under the cluster's findings. `s` sorts (utilisation, step time, name), `/`
filters by name or state, enter opens the node's full single-node view (escape or q returns)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from ..core.cluster import ClusterMonitor, Finding, PrometheusCluster, Row

if TYPE_CHECKING:  # (not imported at run time: a recording's replay brings polars, 80 MiB, live views do not need it)
    from ..core.cluster_profiles import ClusterReplay
from ..core.telemetry.units import format_evidence
from .bars import speed_text
from .render import human_bytes

SORTS = ("utilisation", "step time", "name")
STATE_STYLE = {"LIVE": "green", "STALE": "yellow", "DOWN": "bold red", "ERROR": "red", "CONNECTING": "dim"}
COLUMNS = ("node", "state", "util", "cores", "hbm", "efa", "step", "top")
BLOCKS = "·▁▂▃▄▅▆▇█"  # (an idle core is a dot, not a blank)


def strip(cores: tuple[float, ...], width: int = 16) -> Text:
    """Per-core utilisation as block heights, at most `width` cells (neighbouring cores averaged)."""
    if not cores:
        return Text("")
    k = -(-len(cores) // width)
    cells = [sum(cores[i:i + k]) / len(cores[i:i + k]) for i in range(0, len(cores), k)]
    out = Text()
    for u in cells:
        out.append(BLOCKS[min(8, int(u / 100 * 8 + 0.5))], style="green" if u >= 70 else "yellow" if u >= 40 else "red")
    return out


def finding_text(f: Finding) -> Text:
    t = Text()
    t.append("● ", style="red" if f.severity == "critical" else "yellow")
    t.append(f.title, style="bold")
    ev = [format_evidence(e.name, e.value, e.unit) for e in f.evidence if e.unit]
    if ev:
        t.append("  " + " · ".join(ev), style="dim")
    return t


class ClusterApp(App):
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #head { height: 1; background: $boost; }
    #findings { height: auto; max-height: 8; border: round $primary; padding: 0 1; }
    #filter { display: none; height: 3; }
    #filter.on { display: block; }
    DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("s", "sort", "sort"),
        Binding("slash", "filter", "filter"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        # a recording's timeline: the single-node replay's keys
        Binding("space", "pause", "pause (replay)", show=False),
        Binding("left", "seek(-10)", "-10 s", show=False),
        Binding("right", "seek(10)", "+10 s", show=False),
        Binding("left_square_bracket", "seek(-1)", "-1 s", show=False),
        Binding("right_square_bracket", "seek(1)", "+1 s", show=False),
        Binding("less_than_sign", "speed(0.5)", "slower", show=False),
        Binding("greater_than_sign", "speed(2)", "faster", show=False),
        Binding("home", "seek(-1e12)", "start", show=False, priority=True),  # (before the table scrolls)
        Binding("end", "seek(1e12)", "end", show=False, priority=True),
        Binding("j", "jump", "jump", show=False),
    ]

    def __init__(self, monitor: ClusterMonitor | PrometheusCluster | ClusterReplay,
                 open_cmd: list[str] | None = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.can_open = not isinstance(monitor, PrometheusCluster)  # (through Prometheus there is no stream)
        # a recorded cluster (cluster_profiles.ClusterReplay), told by what it does
        self.replay: ClusterReplay | None = cast("ClusterReplay", monitor) if hasattr(monitor, "seek") else None
        self.open_cmd = open_cmd or [sys.executable, "-m", "neurontop", "--connect"]
        self.sort = 0
        self.filter = ""
        self.shown: list[Row] = []
        self._order: list[str] = []  # the table's rows (node addresses), in order
        self._cells_shown: dict[str, tuple] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Static(id="findings")
        yield Input(placeholder="filter nodes (name or state), enter to apply, escape to clear", id="filter")
        table: DataTable = DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in zip(("node", "state", "util", "cores", "HBM", "EFA", "step", "top finding"), COLUMNS,
                              strict=True):
            table.add_column(label, key=key)
        table.focus()
        self.monitor.start()
        self.refresh_rows()
        self.set_interval(1.0, self.refresh_rows)

    def on_unmount(self) -> None:
        self.monitor.close()

    def refresh_rows(self) -> None:
        rows = self.monitor.rows()
        findings = self.monitor.findings(rows)
        live = sum(r.state == "LIVE" for r in rows)
        where = ""
        if self.replay is not None:
            m = self.replay
            where = (f" · REPLAY {_clock(m.position)} / {_clock(m.length)} {speed_text(m.speed)}"
                     f"{' PAUSED' if m.paused else ''} (space, ←/→, [/], </>, j)")
        self.query_one("#head", Static).update(Text.assemble(
            ("neuron-top cluster ", "bold"), f"· {len(rows)} nodes · {live} live · sorted by {SORTS[self.sort]}",
            (where, "cyan"), (f" · filter {self.filter!r}" if self.filter else "", "yellow")))
        box = self.query_one("#findings", Static)
        box.border_title = "Cluster findings"
        box.update(Text("\n").join(finding_text(f) for f in findings) if findings else
                   Text("no cluster finding: every node reports and none holds the others back", style="green"))
        f = self.filter.lower()
        rows = [r for r in rows if not f or f in r.name.lower() or f in r.state.lower()]
        # whole points and tenths of a second, then the name: a row does not jump for a wobble
        key = (lambda r: (-round(r.util or 0.0), r.name), lambda r: (-round(r.step_time or 0.0, 1), r.name),
               lambda r: (r.name,))[self.sort]
        rows.sort(key=key)
        self.shown = rows
        table = self.query_one(DataTable)
        cells = {r.addr: self._cells(r) for r in rows}
        if list(cells) != self._order:  # another set or order of nodes: rebuild the table
            cursor = table.cursor_row
            table.clear()
            for addr, row in cells.items():
                table.add_row(*row, key=addr)
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1))
            self._order = list(cells)
        else:  # the same rows: only the cells that changed (a rebuild of 64 rows took 75 ms)
            for addr, row in cells.items():
                old = self._cells_shown.get(addr, ())
                for k, (col, value) in enumerate(zip(COLUMNS, row, strict=True)):
                    if k >= len(old) or str(old[k]) != str(value):
                        table.update_cell(addr, col, value)
        self._cells_shown = cells

    @staticmethod
    def _cells(r: Row) -> tuple:
        return (r.name, Text(r.state, style=STATE_STYLE.get(r.state, "")),
                "" if r.util is None else f"{r.util:5.1f}%", strip(r.cores),
                f"{human_bytes(r.hbm_used)}/{human_bytes(r.hbm_capacity)}" if r.hbm_capacity else
                human_bytes(r.hbm_used) if r.hbm_used else "",
                "" if r.efa_rate is None else f"{r.efa_rate / 1e9:.2f} GB/s",
                "" if r.step_time is None else f"{r.step_time:.2f} s",
                r.top_title or r.detail)

    def action_sort(self) -> None:
        self.sort = (self.sort + 1) % len(SORTS)
        self.refresh_rows()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("on")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter = event.value.strip()
        event.input.remove_class("on")
        self.query_one(DataTable).focus()
        self.refresh_rows()

    def action_clear_filter(self) -> None:
        self.filter = ""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("on")
        self.query_one(DataTable).focus()
        self.refresh_rows()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """The node's full single-node view, in this terminal; back here when it quits."""
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row >= len(self.shown):
            return
        if not self.can_open:
            self.notify("a node's full view needs its stream: neuron-top cluster --connect (or neuron-top --connect "
                        "ADDR)", severity="warning")
            return
        addr = self.shown[table.cursor_row].addr
        with self.suspend():
            if self.replay is not None:  # the node's profile, at the same moment
                subprocess.run([*self.open_cmd[:-1], "replay", addr, "--start", f"{self.replay.position:.1f}",
                                "--escape-quits"], check=False)
            else:
                subprocess.run([*self.open_cmd, addr, "--escape-quits"], check=False)
        self.refresh_rows()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The timeline's keys only in a replay (live, home and end scroll the table)."""
        if action in ("pause", "seek", "speed", "jump"):
            return self.replay is not None
        return True

    def action_pause(self) -> None:
        if self.replay is not None:
            self.replay.toggle()
            self.refresh_rows()

    def action_seek(self, seconds: float) -> None:
        if self.replay is not None:
            self.replay.seek(seconds)
            self.refresh_rows()

    def action_speed(self, factor: float) -> None:
        if self.replay is not None:
            self.replay.faster(factor)
            self.refresh_rows()

    def action_jump(self) -> None:
        """The single-node replay's jump prompt: 90, 1:30, 1m30s, +10s, -2m."""
        rep = self.replay
        if rep is None:
            return
        from .screens import JumpScreen

        def done(t: float | None) -> None:
            if t is not None:
                rep.go(t)
                self.refresh_rows()

        self.push_screen(JumpScreen(lambda: rep.position), done)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
