"""The cluster: a simulated data-parallel job across nodes (devicesim cluster), the headless cluster
monitor and its findings, and the cluster view in a real terminal against a real simulator process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from devicesim.cluster import build
from devicesim.presets import get_preset
from neurontop.core.cluster import DOWN_AFTER_S, ClusterMonitor, addresses
from neurontop.core.telemetry.sources import Line, Status

from .conftest import bin_path, make_reports, strip_extension


def _utils(c, windows: int = 30) -> list[float]:
    out = []
    for n in c.nodes:
        reps = [n.engine.step_window() for _ in range(windows)]
        out.append(float(np.mean([[x["neuroncore_utilization"] for x in r["neuron_runtime_data"][0]["report"]
                                   ["neuroncore_counters"]["neuroncores_in_use"].values()] for r in reps[10:]])))
    return out


def test_the_job_steps_at_the_slowest_nodes_pace() -> None:
    healthy = build(get_preset("trn1.32xlarge"), 4, "healthy")
    slow = build(get_preset("trn1.32xlarge"), 4, "slow_node", faulty=2)
    p = {n.engine.model.period_s for n in slow.nodes}
    assert len(p) == 1 and p.pop() == pytest.approx(slow.nodes[2].own.period_s)  # every node at the slow one's pace
    assert slow.nodes[2].own.period_s > 1.3 * healthy.nodes[0].own.period_s
    u = _utils(slow)
    assert u[2] - np.median([u[0], u[1], u[3]]) > 15  # its cores work while the others wait
    assert slow.truth["cause"] == "slow_node" and slow.truth["node"] == "node-02"
    assert healthy.truth["cause"] == "none"
    rep = slow.nodes[0].engine.step_window()
    assert rep["neuron_top"]["truth"]["cluster"] == {"cause": "slow_node", "node": "node-02",
                                                     "lost": slow.truth["lost"]}
    assert json.loads(bytes(rep["instance_info"]))["instance_name"] == "node-00"


def test_a_degraded_network_slows_every_node_and_nodes_share_their_models() -> None:
    c = build(get_preset("trn1.32xlarge"), 8, "degraded_efa")
    assert c.truth["cause"] == "network" and c.truth["lost"]["network"] > 0.5
    assert len({id(n.own) for n in c.nodes}) == 2  # seven healthy nodes share one timing model
    u = _utils(c)
    assert max(u) - min(u) < 2 and max(u) < 50
    # the counterfactual: without the fault the job is back at a healthy node's pace
    assert build(get_preset("trn1.32xlarge"), 8, "healthy").nodes[0].engine.model.period_s < \
        (1 - c.truth["lost"]["network"] + 0.01) * c.nodes[0].engine.model.period_s


def test_a_control_request_to_one_node_recouples_the_job() -> None:
    c = build(get_preset("trn1.2xlarge"), 3, "healthy")
    before = c.nodes[0].engine.model.period_s
    c.nodes[1].engine.control({"set": {"slowdown": 2.0}})
    assert c.nodes[0].engine.model.period_s > 1.5 * before  # node 0 now waits for node 1


def test_bad_cluster_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown cluster scenario"):
        build(get_preset("trn1.2xlarge"), 4, "meteor")
    with pytest.raises(ValueError, match="at least 2"):
        build(get_preset("trn1.2xlarge"), 1)
    r = subprocess.run([bin_path("devicesim"), "cluster", "--nodes", "4", "--scenario", "meteor"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown cluster scenario" in r.stderr


# -- the monitor, on scripted streams -------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _monitor(streams: dict[str, list], clock: Clock) -> ClusterMonitor:
    m = ClusterMonitor(list(streams), source=lambda a: iter(streams[a]), clock=clock)
    m.start()
    for t in m._threads:
        t.join(timeout=30)
    return m


def test_states_and_findings_from_plain_telemetry() -> None:
    """Plain neuron-monitor reports (no extension): a busy node among idle ones is the slow node; a
    node that lost its connection is STALE, then DOWN; one that sends garbage is ERROR; none of them
    changes the others' rows."""
    busy = strip_extension(make_reports("trn1.2xlarge", "healthy", 12))
    idle = strip_extension(make_reports("trn1.2xlarge", "input_bound", 12))
    clock = Clock()
    streams = {f"n{i}": [Status("connected", "x")] + [Line(x) for x in idle] for i in range(4)}
    streams["n1"] = [Status("connected", "x")] + [Line(x) for x in busy]
    streams["n3"] = streams["n3"] + [Status("lost", "connection to n3 lost; reconnecting")]
    streams["n4"] = [Status("connected", "x"), Line(b"this is not telemetry\n")]
    m = _monitor(streams, clock)
    rows = {r.name: r for r in m.rows()}
    assert [rows[n].state for n in ("n0", "n1", "n2", "n3", "n4")] == ["LIVE", "LIVE", "LIVE", "STALE", "ERROR"]
    assert "not neuron-monitor telemetry" in rows["n4"].detail and rows["n0"].util is not None
    found = {f.cause: f for f in m.findings()}
    assert found["slow_node"].nodes == ("n1",)
    assert found["node_down"].nodes == ("n3",) and found["node_down"].severity == "warning"
    clock.t += DOWN_AFTER_S + 1  # nothing from anyone since: every node is DOWN now
    assert {r.state for r in m.rows() if r.name != "n4"} == {"DOWN"}


def test_connect_takes_a_list_or_a_folder_of_node_sockets(tmp_path) -> None:
    assert addresses("a.sock, 127.0.0.1:9000") == ["a.sock", "127.0.0.1:9000"]
    for i in (1, 0):
        (tmp_path / f"node-0{i}.sock").write_text("")
    assert addresses(str(tmp_path)) == [str(tmp_path / "node-00.sock"), str(tmp_path / "node-01.sock")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no node sockets"):
        addresses(str(empty))


# -- the view in a real terminal ------------------------------------------------------------------------
pytestmark_e2e = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")


def _cluster(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    folder = tmp_path / "cl"
    p = subprocess.Popen([bin_path("devicesim"), "cluster", "--nodes", "8", "--socket-dir", str(folder), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(list(folder.glob("*.sock"))) < 8:
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    return p, folder


@pytestmark_e2e
@pytest.mark.e2e
def test_cluster_view_finds_the_slow_node_and_opens_it(tmp_path) -> None:
    from .test_e2e_tmux import Tmux

    sim, folder = _cluster(tmp_path, "--scenario", "slow_node", "--faulty-node", "5")
    t = Tmux(f"{bin_path('neuron-top')} cluster --connect {folder}")
    try:
        screen = t.wait_for(r"node-05 holds the job back", timeout=30)  # (about 5 s on a quiet machine)
        assert all(f"node-0{i}  LIVE" in screen for i in range(8)), screen
        t.keys("Enter")  # the busiest node is first: its full single-node view
        t.wait_for(r"socket \S*node-05\.sock", timeout=60)
        t.keys("Escape")
        t.wait_for(r"neuron-top cluster · 8 nodes")
        t.keys("/", "node-07", "Enter")
        screen = t.wait_for(r"filter 'node-07'")
        assert re.findall(r"^\s*(node-\d\d)\s+LIVE", screen, re.M) == ["node-07"]
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.kill()
        sim.terminate()
        sim.wait(timeout=10)


@pytestmark_e2e
@pytest.mark.e2e
@pytest.mark.slow
def test_a_node_that_dies_turns_stale_then_down_and_comes_back(tmp_path) -> None:
    sim, folder = _cluster(tmp_path, "--scenario", "node_down", "--faulty-node", "3", "--down", "5+16",
                           "--preset", "trn1.2xlarge")
    from .test_e2e_tmux import Tmux

    t = Tmux(f"{bin_path('neuron-top')} cluster --connect {folder}")
    try:
        t.wait_for(r"8 live", timeout=15)
        t.wait_for(r"node-03\s+STALE", timeout=15)
        t.wait_for(r"node-03\s+DOWN", timeout=20)
        screen = t.wait_for(r"node-03 is down")
        assert "7 live" in screen  # the others still report (their job stalls: they wait for node-03)
        t.wait_for(r"node-03\s+LIVE", timeout=30)
        t.wait_for(r"8 live")
    finally:
        t.kill()
        sim.terminate()
        sim.wait(timeout=10)


def test_a_prometheus_url_that_is_not_prometheus_is_one_error_row(tmp_path) -> None:
    import http.server
    import threading

    from neurontop.core.cluster import PrometheusCluster

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args) -> None:  # quiet
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for url, why in ((f"http://127.0.0.1:{srv.server_port}", "is it Prometheus"),
                         ("http://127.0.0.1:1", "cannot reach")):
            c = PrometheusCluster(url)
            c.poll()
            (row,) = c.rows()
            assert row.state == "ERROR" and why in row.detail and "\n" not in row.detail
            assert c.findings() == []
    finally:
        srv.shutdown()
    r = subprocess.run([bin_path("neuron-top"), "cluster", "--prometheus", "localhost:9090"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "give the server's URL" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_record_replay_export_and_diagnose_a_cluster(tmp_path) -> None:
    """record --cluster writes a profile per node and an index; diagnose names the slow node; export
    writes every node's rows with a node column; the replay source puts the nodes on one clock."""
    import csv
    import io

    from neurontop.core.cluster_profiles import ClusterReplay

    from .conftest import run_cli

    sim, folder = _cluster(tmp_path, "--scenario", "slow_node", "--faulty-node", "6", "--preset", "trn1.2xlarge",
                           "--speed", "4")
    out = tmp_path / "run"
    try:
        r = run_cli("record", "--cluster", str(folder), "-o", str(out), "--count", "40", timeout=120)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cluster.json", *[f"node-0{i}.ntprof" for i in range(8)]]
    d = run_cli("diagnose", str(out), "--json")
    assert d.returncode == 1, d.stderr
    found = json.loads(d.stdout)["findings"]
    assert found[0]["cause"] == "slow_node" and found[0]["nodes"] == ["node-06"] and found[0]["share_of_run"] > 0.5
    e = run_cli("export", str(out), "-o", "-", "--fields", "util")
    rows = list(csv.DictReader(io.StringIO(e.stdout.decode())))
    assert e.returncode == 0 and list(rows[0])[:2] == ["node", "time_s"]
    assert {r["node"] for r in rows} == {f"node-0{i}" for i in range(8)} and len(rows) == 8 * 40
    rep = ClusterReplay(str(out))
    rep.paused = True
    rep.seek(rep.length / 2)
    assert {f.cause: f.nodes for f in rep.findings()}["slow_node"] == ("node-06",)
    assert {r.state for r in rep.rows()} == {"LIVE"}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cluster.json").write_text("{nope")
    b = run_cli("diagnose", str(bad))
    assert b.returncode == 2 and "not a neuron-top cluster index" in b.stderr.decode() and b"Traceback" not in b.stderr
    again = run_cli("record", "--cluster", "127.0.0.1:1", "-o", str(out), "--count", "1")
    assert again.returncode == 2 and b"not empty" in again.stderr


def test_an_unreachable_node_is_down_with_the_reason_in_its_row() -> None:
    clock = Clock()
    m = ClusterMonitor(["127.0.0.1:1"], clock=clock)
    m.start()
    try:
        deadline = time.monotonic() + 10
        while "cannot connect" not in m.rows()[0].detail:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert m.rows()[0].state == "CONNECTING"
        clock.t += DOWN_AFTER_S
        (row,) = m.rows()
        assert row.state == "DOWN" and "127.0.0.1:1" in row.detail and "\n" not in row.detail
        assert [f.cause for f in m.findings()] == ["node_down"]
    finally:
        m.close()


def _recorded_cluster(folder: Path) -> None:
    """Two nodes recorded from simulator reports (a busy one and a starving one), with the index."""
    from neurontop.core.store.recorder import Recorder
    from neurontop.core.telemetry.sample import Decoder

    folder.mkdir()
    nodes = []
    for i, scenario in enumerate(("healthy", "input_bound")):
        rec = Recorder(str(folder / f"node-0{i}.ntprof"))
        d = Decoder()
        for k, x in enumerate(make_reports("trn1.2xlarge", scenario, 90, seed=i + 1)):
            rec.append(x, d.decode(x), now=float(k))
        rec.close()
        nodes.append({"name": f"node-0{i}", "addr": f"node-0{i}.sock", "file": f"node-0{i}.ntprof"})
    (folder / "cluster.json").write_text(json.dumps({"format": "neuron-top-cluster", "version": 1, "nodes": nodes}))


async def test_a_cluster_replay_takes_the_single_node_replays_timeline_keys(tmp_path) -> None:
    from neurontop.core.cluster_profiles import ClusterReplay
    from neurontop.ui.cluster import ClusterApp

    _recorded_cluster(tmp_path / "run")
    clock = Clock()
    rep = ClusterReplay(str(tmp_path / "run"), clock=clock)
    app = ClusterApp(rep)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("space")  # pause
        assert rep.paused
        await pilot.press("right", "right_square_bracket")
        assert rep.position == pytest.approx(11.0)
        await pilot.press("greater_than_sign", "greater_than_sign", "less_than_sign")
        assert rep.speed == 2.0
        await pilot.press("j", *"1:00", "enter")
        await pilot.pause()
        assert rep.position == pytest.approx(60.0)
        await pilot.press("end")
        assert rep.position == pytest.approx(rep.length)
        await pilot.press("home")
        assert rep.position == 0.0
        head = str(app.query_one("#head").render())
        assert "REPLAY 00:00 / 01:29 2x PAUSED" in head


def test_through_prometheus_a_node_whose_exporter_serves_old_values_goes_stale_then_down() -> None:
    """An exporter keeps serving its last report's gauges when its stream stops; its
    neurontop_last_report_timestamp_seconds says how old they are, and the row follows it."""
    import http.server
    import threading
    import urllib.parse

    from neurontop.core.cluster import PrometheusCluster

    def vec(metric: dict, v: float) -> dict:
        return {"metric": metric, "value": [0, str(v)]}

    nodes = {"node-00": 1.0, "node-01": 5.0, "node-02": DOWN_AFTER_S + 2}  # seconds since each one's last report
    answers = {q: [] for q in PrometheusCluster.QUERIES.values()}
    for n, age in nodes.items():
        answers[PrometheusCluster.QUERIES["util"]].append(vec({"instance_name": n}, 0.8))
        answers[PrometheusCluster.QUERIES["age"]].append(vec({"instance_name": n}, age))

    class Prom(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": answers[q]}})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Prom)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = PrometheusCluster(f"http://127.0.0.1:{srv.server_port}")
        c.poll()
        rows = {r.name: r for r in c.rows()}
        assert [rows[n].state for n in nodes] == ["LIVE", "STALE", "DOWN"]
        assert rows["node-02"].detail == f"no report for {DOWN_AFTER_S + 2:.0f} s"
        assert [f.nodes for f in c.findings() if f.cause == "node_down"] == [("node-01", "node-02")]
    finally:
        srv.shutdown()
