"""devicesim command line: serve, presets, scenarios, ctl."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import sys
import time

from .engine import PROTOCOL, PROTOCOL_VERSION, Engine, SimConfig
from .knobs import KnobError
from .knobs import check as check_knob
from .presets import PRESETS, describe, get_preset
from .scenarios import SCENARIOS
from .server import MAX_CLIENTS, ServeError, default_socket_path, serve, stream_stdout, unsafe_socket

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 1s, 500ms, 10m)")
    value = float(m.group(1)) * _UNITS[m.group(2) or ""]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return value


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number or 'max', not {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("speed must be positive")
    return v


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, not {text!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


def parse_set(items: list[str]) -> dict:
    """--set knob=value, typed and range-checked by devicesim.knobs."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ServeError(f"--set {item!r}: expected KNOB=VALUE")
        try:
            out[key] = check_knob(key, raw)
        except KnobError as exc:
            raise ServeError(f"--set {item!r}: {exc}") from None
    return out


TOKEN_ENV = "DEVICESIM_TOKEN"


def _token_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--token", help=f"{what} (readable by every local user in /proc: prefer --token-file or "
                                   f"${TOKEN_ENV})")
    p.add_argument("--token-file", help=f"a file holding {what} (mode 0600)")


def read_token(args: argparse.Namespace) -> str | None:
    """The control token from --token-file, $DEVICESIM_TOKEN or --token (warned about); never empty."""
    token, where = None, ""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token, where = f.read().strip(), f"--token-file {args.token_file}"
        except OSError as exc:
            raise ServeError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if os.stat(args.token_file).st_mode & 0o077:
            print(f"devicesim: warning: {args.token_file} is readable by other users (chmod 600 it)", file=sys.stderr)
    elif args.token is not None:
        token, where = args.token, "--token"
        if token:
            print(f"devicesim: warning: a token on the command line is readable by every local user; use "
                  f"--token-file or ${TOKEN_ENV}", file=sys.stderr)
    elif TOKEN_ENV in os.environ:
        token, where = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    if token is not None and not token:
        raise ServeError(f"{where} is empty: an empty token would give control to any TCP client")
    return token


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="devicesim", description="A simulated Trainium machine streaming "
                                 "neuron-monitor telemetry.")
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="run the simulator and stream reports")
    s.add_argument("--preset", default="trn1.32xlarge", choices=sorted(PRESETS))
    s.add_argument("--lnc", type=int, choices=(1, 2), help="logical NeuronCore config (trn2 only)")
    s.add_argument("--scenario", default="healthy", choices=sorted(SCENARIOS))
    s.add_argument("--workload", help="gpt-small, gpt-1.3b, llama2-7b or llama3-8b (default: by preset)")
    s.add_argument("--period", type=parse_duration, default=1.0, help="report period (default 1s)")
    s.add_argument("--speed", type=parse_speed, default=1.0, help="simulated seconds per wall second, or max")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="set a knob (repeatable)")
    s.add_argument("--no-numerics", action="store_true", help="timing model only, no proxy training loop")
    s.add_argument("--count", type=int, help="stop after this many reports")
    s.add_argument("--duration", type=parse_duration, help="stop after this much simulated time")
    s.add_argument("--start-time", type=float, help="unix time of the simulated clock's start")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--socket", help=f"Unix socket path (default {default_socket_path()})")
    where.add_argument("--listen", type=parse_listen, metavar="HOST:PORT", help="serve TCP instead")
    where.add_argument("--stdout", action="store_true", help="print reports to stdout only, no hello line")
    _token_args(s, "token that allows control requests over TCP")
    s.add_argument("--max-clients", type=int, default=MAX_CLIENTS,
                   help=f"connections served at once; the slowest reader makes room (default {MAX_CLIENTS})")
    s.add_argument("--client-queue", type=int, default=256, help="reports buffered per client before the oldest "
                   "are dropped (default 256)")
    k = sub.add_parser("cluster", help="a data-parallel job across N simulated instances, a stream per node")
    k.add_argument("--nodes", type=int, default=8)
    k.add_argument("--preset", default="trn1.32xlarge", choices=sorted(PRESETS))
    k.add_argument("--lnc", type=int, choices=(1, 2), help="logical NeuronCore config (trn2 only)")
    k.add_argument("--scenario", default="healthy", help="a cluster fault on one node: "
                   "healthy, slow_node, degraded_efa, input_starved, node_down, hw_errors")
    k.add_argument("--faulty-node", type=int, default=-1, help="the node with the fault (default: the middle one)")
    k.add_argument("--down", metavar="AFTER+FOR", help="the faulty node goes down AFTER seconds for FOR seconds "
                   "(node_down; default 30+20)")
    k.add_argument("--workload", help="gpt-small, gpt-1.3b, llama2-7b or llama3-8b (default: by preset)")
    k.add_argument("--period", type=parse_duration, default=1.0, help="report period (default 1s)")
    k.add_argument("--speed", type=parse_speed, default=1.0, help="simulated seconds per wall second")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="a knob on every node")
    k.add_argument("--duration", type=parse_duration, help="stop after this much simulated time")
    kw = k.add_mutually_exclusive_group()
    kw.add_argument("--socket-dir", help="a Unix socket per node here, node-00.sock ... (default: a new folder in "
                    "$XDG_RUNTIME_DIR or /tmp)")
    kw.add_argument("--base-port", type=int, help="TCP on 127.0.0.1, node i on port BASE+i")
    _token_args(k, "token that allows control requests over TCP")
    sub.add_parser("presets", help="print the hardware presets")
    sub.add_parser("scenarios", help="print the scenarios and their injected causes")
    c = sub.add_parser("ctl", help="send a control request to a running simulator")
    c.add_argument("--socket", default=None)
    c.add_argument("--connect", metavar="HOST:PORT", type=parse_listen)
    _token_args(c, "the server's control token (TCP)")
    c.add_argument("--scenario", choices=sorted(SCENARIOS))
    c.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    c.add_argument("--pause", action="store_true")
    c.add_argument("--resume", action="store_true")
    return ap


def _ctl(args: argparse.Namespace) -> int:
    req: dict = {"type": "control"}
    if args.scenario:
        req["scenario"] = args.scenario
    if args.set:
        req["set"] = parse_set(args.set)
    if args.pause or args.resume:
        req["pause"] = bool(args.pause)
    token = read_token(args)
    if token:
        req["token"] = token
    if args.connect:
        sock = socket.create_connection(args.connect, timeout=5)
    else:
        path = args.socket or default_socket_path()
        if not args.socket:
            why = unsafe_socket(path)
            if why:
                raise ServeError(f"not connecting to the default socket: {why}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(path)
        except OSError as exc:
            raise ServeError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    f = sock.makefile("rwb")
    f.write(json.dumps({"type": "hello", "protocol": PROTOCOL, "version": PROTOCOL_VERSION}).encode() + b"\n")
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        line = f.readline()
        if not line:
            break
        if line.startswith(b'{"type"'):
            msg = json.loads(line)
            if msg["type"] in ("control_ok", "control_error", "error"):
                print(json.dumps(msg))
                return 0 if msg["type"] == "control_ok" else 1
    raise ServeError("no answer to the control request")


def _cluster(args: argparse.Namespace) -> int:
    import tempfile

    from .cluster import build, serve_cluster

    preset = get_preset(args.preset, args.lnc)
    if args.speed is None:
        raise ServeError("--speed max is not for a cluster: its nodes stream in real time or at a fixed speed")
    realtime = args.speed == 1.0
    c = build(preset, args.nodes, args.scenario, args.faulty_node, args.seed, args.period, parse_set(args.set),
              args.workload, start_time=time.time() if realtime else None, wall_clock=realtime,
              token=read_token(args))
    crashed = [n.name for n in c.nodes if n.engine.crashed]
    if crashed:
        need = c.nodes[0].engine.mem_active.total
        raise ServeError(f"the workload does not fit: {need} bytes needed per core, {preset.core_hbm_bytes} available")
    if args.scenario == "node_down" or args.down:
        after, _, length = (args.down or "30+20").partition("+")
        try:
            node = c.nodes[c.faulty if c.faulty >= 0 else len(c.nodes) // 2]
            node.down_at, node.down_for = float(after), float(length or 20)
        except ValueError:
            raise ServeError(f"--down {args.down!r}: expected AFTER+FOR in seconds, for example 30+20") from None
    if args.base_port is not None and not 0 < args.base_port <= 65535 - args.nodes:
        raise ServeError(f"--base-port {args.base_port}: the ports {args.base_port}-{args.base_port + args.nodes - 1} "
                         "are not all valid")
    folder = args.socket_dir
    if args.base_port is None and folder is None:
        folder = tempfile.mkdtemp(prefix="devicesim-cluster-", dir=os.environ.get("XDG_RUNTIME_DIR") or None)
    if folder is not None:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        print(f"devicesim: node sockets in {folder} (neuron-top cluster --connect {folder})", file=sys.stderr)
    serve_cluster(c, args.speed, folder, args.base_port, duration_s=args.duration)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the proxy model is tiny; threads only cost
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "presets":
            for p in PRESETS.values():
                print(describe(p))
            return 0
        if args.cmd == "scenarios":
            for s in SCENARIOS.values():
                print(f"{s.name:13s} cause={s.truth:15s} {s.description}")
            return 0
        if args.cmd == "ctl":
            return _ctl(args)
        if args.cmd == "cluster":
            return _cluster(args)
        if args.cmd != "serve":
            build_parser().print_help()
            return 2
        preset = get_preset(args.preset, args.lnc)
        realtime = args.speed == 1.0
        start = args.start_time if args.start_time is not None else (time.time() if realtime else None)
        cfg = SimConfig(preset=preset, scenario=args.scenario, seed=args.seed, period_s=args.period,
                        numerics=not args.no_numerics, workload=args.workload, overrides=parse_set(args.set),
                        start_time=start, wall_clock=realtime and args.start_time is None,
                        pid=os.getpid() if realtime else 4242)
        token = read_token(args)
        if args.max_clients < 1:
            raise ServeError(f"--max-clients {args.max_clients}: must be at least 1")
        if args.listen and not _is_loopback(args.listen[0]):
            print(f"devicesim: warning: --listen {args.listen[0]} is not a loopback address: other machines can "
                  "connect and read the telemetry", file=sys.stderr)
        engine = Engine(cfg)
        if engine.crashed:  # a job that cannot start is refused, not served as an idle stream
            need, cap = engine.mem_active.total, preset.core_hbm_bytes
            print(f"devicesim: error: the workload does not fit: {need} bytes ({need / 2**30:.1f} GiB) needed per "
                  f"core, {cap} bytes ({cap / 2**30:.1f} GiB) available on {preset.name} at LNC={preset.lnc} "
                  "(lower micro_batch, raise tp, or set zero1/recompute)", file=sys.stderr)
            return 2
        if args.stdout:
            stream_stdout(engine, args.speed, args.count, args.duration)
        else:
            serve(engine, args.speed, socket_path=None if args.listen else (args.socket or default_socket_path()),
                  listen=args.listen, token=token, count=args.count, duration_s=args.duration,
                  queue_reports=max(1, args.client_queue), max_clients=args.max_clients)
        return 0
    except (ServeError, ValueError) as exc:
        print(f"devicesim: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"devicesim: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
