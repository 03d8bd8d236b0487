"""A data-parallel job across N simulated instances: one engine and one stream per node, coupled
by the gradient all-reduce.

Every node computes its own step (its knobs: a slow node, a starving input pipeline, ECC errors),
and the job steps at the pace of the slowest: each node's step lasts the cluster's step, the
difference spent waiting at the all-reduce (after its last backward pass, before the optimizer).
The all-reduce's ring over EFA runs at the slowest link's share (`efa_efficiency`: a degraded
network slows every node). Nodes with the same knobs share one timing model (a 64-node job with one
faulty node computes two). A node that goes down stops its stream and closes its connections; the
others stall at the next all-reduce (their cores idle, memory held) until it is back.

Truth: each node's report carries the cluster's main cause and the node responsible
(`truth.cluster`): the fault whose removal shortens the job's step most (the counterfactual, as
truth.py does for one node), "none" below `NONE_BELOW` of the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace

from .engine import Engine, SimConfig
from .presets import Preset
from .server import Server, _serve_async, prepare_socket_path
from .timing import Knobs, StepModel, step_model
from .truth import NONE_BELOW

# Node-level faults: the cluster scenario -> (its cause, the knobs on the faulty node)
CLUSTER_SCENARIOS: dict[str, tuple[str, dict]] = {
    "healthy": ("none", {}),
    "slow_node": ("slow_node", {"slowdown": 1.5}),  # throttled chips: every core 1.5x slower
    "degraded_efa": ("network", {"efa_efficiency": 0.05}),  # a bad link: the ring runs at its pace
    "input_starved": ("input_pipeline", {"workers": 1, "cpu_us_per_token": 60.0}),
    "node_down": ("node_down", {}),  # the node stops (use --down to say when) and comes back
    "hw_errors": ("hardware_errors", {"ecc_per_s": 5.0, "slowdown": 1.3}),
}
# The knobs a node's fault set, back to healthy (the counterfactual)
HEALTHY = {"slowdown": 1.0, "efa_efficiency": 1.0, "workers": None, "cpu_us_per_token": None, "ecc_per_s": 0.0}


@dataclass
class Node:
    name: str
    engine: Engine
    server: Server
    own: StepModel  # the node's own step, before the coupling
    down_until: float = 0.0  # monotonic time until which the node is down
    down_at: float | None = None  # a scheduled failure (seconds after start)
    down_for: float = 0.0


@dataclass
class Cluster:
    preset: Preset
    nodes: list[Node] = field(default_factory=list)
    scenario: str = "healthy"
    faulty: int = -1
    truth: dict = field(default_factory=dict)

    def couple(self) -> None:
        """Every node's model at the job's pace; the cluster's truth."""
        period = max(n.own.period_s for n in self.nodes)
        for n in self.nodes:
            n.engine.model = at_pace(n.own, period)
            n.engine.cluster_truth = self.truth
        self.truth.clear()
        self.truth.update(self._truth(period))

    def _truth(self, period: float) -> dict:
        cause, _ = CLUSTER_SCENARIOS.get(self.scenario, ("none", {}))
        if self.faulty < 0 or cause == "none":
            return {"cause": "none", "node": None, "lost": {}}
        if cause == "node_down":
            return {"cause": "node_down", "node": self.nodes[self.faulty].name, "lost": {}}
        without = max(healthy_period(self, i) for i in range(len(self.nodes)))
        lost = max(0.0, 1.0 - without / period)
        return {"cause": cause if lost >= NONE_BELOW else "none", "node": self.nodes[self.faulty].name,
                "lost": {cause: round(lost, 4)}}


def at_pace(m: StepModel, period: float) -> StepModel:
    """Node model `m` stepping every `period` (>= its own): the extra time is a wait at the gradient
    all-reduce, after the last micro-batch and before the optimizer."""
    extra = max(0.0, period - m.period_s)
    if extra == 0.0:
        return m
    return replace(m, period_s=period, tail_gap_s=m.tail_gap_s + extra,
                   worker_busy=min(1.0, m.input_s / period) if period > 0 else 0.0)


def healthy_period(c: Cluster, i: int) -> float:
    """Node i's step time with the cluster's fault removed (the counterfactual)."""
    n = c.nodes[i]
    if i != c.faulty and c.scenario != "degraded_efa":
        return n.own.period_s
    knobs = n.engine.knobs
    base = Knobs()
    fixed: dict = {k: (getattr(base, k) if v is None else v) for k, v in HEALTHY.items()}
    return step_model(c.preset, n.engine.wl, replace(knobs, **fixed)).period_s


def build(preset: Preset, nodes: int, scenario: str = "healthy", faulty: int = -1, seed: int = 0,
          period_s: float = 1.0, overrides: dict | None = None, workload: str | None = None,
          start_time: float | None = None, wall_clock: bool = False, token: str | None = None) -> Cluster:
    """N engines for one data-parallel job; node `faulty` gets the cluster scenario's fault."""
    if scenario not in CLUSTER_SCENARIOS:
        raise ValueError(f"unknown cluster scenario {scenario!r}; choose one of {', '.join(CLUSTER_SCENARIOS)}")
    if nodes < 2:
        raise ValueError(f"--nodes {nodes}: a cluster has at least 2 nodes")
    if CLUSTER_SCENARIOS[scenario][0] != "none" and faulty < 0:
        faulty = nodes // 2
    if faulty >= nodes:
        raise ValueError(f"--faulty-node {faulty}: the cluster has nodes 0 to {nodes - 1}")
    c = Cluster(preset, scenario=scenario, faulty=faulty)
    models: dict[tuple, StepModel] = {}
    for i in range(nodes):
        over = {**(overrides or {}), "nodes": nodes}
        if i == faulty:
            over.update(CLUSTER_SCENARIOS[scenario][1])
        cfg = SimConfig(preset, "healthy", seed=seed + i, period_s=period_s, numerics=False, workload=workload,
                        overrides=over, start_time=start_time, wall_clock=wall_clock,
                        instance_name=f"node-{i:02d}")
        eng = Engine(cfg, models)
        c.nodes.append(Node(f"node-{i:02d}", eng, Server(eng, 1.0, token), eng.model))
    by_engine = {id(n.engine): n for n in c.nodes}

    def changed(eng: Engine) -> None:  # a control request changed one node: couple the job again
        by_engine[id(eng)].own = eng.model
        c.couple()

    for n in c.nodes:
        n.engine.on_apply = changed
    c.couple()
    return c


async def _run(c: Cluster, speed: float, places: list[tuple[str | None, tuple[str, int] | None]],
               duration_s: float | None) -> None:
    stop = asyncio.Event()
    start = time.monotonic()
    for n in c.nodes:
        n.server.speed = speed
        n.server.stop_event = stop  # one stop for the whole job
        n.server.duration_s = duration_s
    tasks = [asyncio.create_task(_serve_async(n.server, path, listen)) for n, (path, listen) in zip(c.nodes, places,
                                                                                                     strict=True)]
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        now = time.monotonic()
        for n in c.nodes:
            if n.down_at is not None and now - start >= n.down_at:
                n.down_until, n.down_at = now + n.down_for, None
        down = [n for n in c.nodes if n.down_until > now]
        for n in c.nodes:
            n.server.down = n.down_until > now
            n.engine.paused = bool(down)  # the job stalls at the next all-reduce while a node is away
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    await asyncio.gather(*tasks, return_exceptions=True)


def serve_cluster(c: Cluster, speed: float, socket_dir: str | None, base_port: int | None,
                  host: str = "127.0.0.1", duration_s: float | None = None) -> list[str]:
    """Serve every node: a Unix socket per node in `socket_dir`, or TCP ports from `base_port`."""
    places: list[tuple[str | None, tuple[str, int] | None]] = []
    where = []
    for i, n in enumerate(c.nodes):
        if base_port is not None:
            places.append((None, (host, base_port + i)))
            where.append(f"{host}:{base_port + i}")
        else:
            assert socket_dir
            path = os.path.join(socket_dir, f"{n.name}.sock")
            prepare_socket_path(path)
            places.append((path, None))
            where.append(path)
    print(f"devicesim: cluster of {len(c.nodes)} x {c.preset.name}, scenario {c.scenario}"
          + (f" on {c.nodes[c.faulty].name}" if c.faulty >= 0 else ""), file=sys.stderr, flush=True)
    asyncio.run(_run(c, speed, places, duration_s))
    return where
