"""devicesim command line: serve, presets, scenarios, ctl."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time

from .engine import PROTOCOL, PROTOCOL_VERSION, Engine, SimConfig
from .presets import PRESETS, describe, get_preset
from .scenarios import SCENARIOS
from .server import ServeError, default_socket_path, serve, stream_stdout
from .timing import Knobs

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


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, not {text!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


# How a --set value is read; every other knob is a float.
_KNOB_KIND = {"overlap_grad_allreduce": bool, "zero1": bool, "dtype": str, "recompute": str,
              "workers": int, "prefetch": int, "straggler_core": int, "idle_cores": int, "micro_batch": int,
              "global_batch": int, "seq": int, "nodes": int, "extra_tensor_bytes": int}


def parse_set(items: list[str]) -> dict:
    """--set knob=value, typed by _KNOB_KIND."""
    out: dict = {}
    fields = Knobs.__dataclass_fields__
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ServeError(f"--set {item!r}: expected KNOB=VALUE with KNOB one of {', '.join(fields)}")
        kind = _KNOB_KIND.get(key, float)
        try:
            if kind is bool:
                value = raw.lower() in ("1", "true", "yes", "on")
            else:
                value = kind(raw)
        except ValueError:
            raise ServeError(f"--set {item!r}: {raw!r} is not a valid value for {key}") from None
        out[key] = value
    return out


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
    s.add_argument("--token", help="token that allows control requests over TCP")
    s.add_argument("--client-queue", type=int, default=256, help="reports buffered per client before the oldest "
                   "are dropped (default 256)")
    sub.add_parser("presets", help="print the hardware presets")
    sub.add_parser("scenarios", help="print the scenarios and their injected causes")
    c = sub.add_parser("ctl", help="send a control request to a running simulator")
    c.add_argument("--socket", default=None)
    c.add_argument("--connect", metavar="HOST:PORT", type=parse_listen)
    c.add_argument("--token")
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
    if args.token:
        req["token"] = args.token
    if args.connect:
        sock = socket.create_connection(args.connect, timeout=5)
    else:
        path = args.socket or default_socket_path()
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
        engine = Engine(cfg)
        if args.stdout:
            stream_stdout(engine, args.speed, args.count, args.duration)
        else:
            serve(engine, args.speed, socket_path=None if args.listen else (args.socket or default_socket_path()),
                  listen=args.listen, token=args.token, count=args.count, duration_s=args.duration,
                  queue_reports=max(1, args.client_queue))
        return 0
    except (ServeError, ValueError) as exc:
        print(f"devicesim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
