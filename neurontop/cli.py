"""neuron-top command line: the live monitor and its record / replay / export / import / diagnose.

(About 590 lines: the parsers and one short function per command, which checks its options and
calls the core. The options shared by several commands are defined once here, so the commands stay
together rather than in a module each.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import signal
import sys
import time

from .core.telemetry import units

SUBCOMMANDS = ("record", "replay", "export", "import", "diagnose", "exporter", "cluster")




class UsageError(Exception):
    """Bad input from the user: one line, exit status 2."""


def parse_duration(text: str) -> float:
    try:
        return units.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_time(text: str) -> float:
    """Seconds from the start: '90', '1:30', '01:02:03', or a duration such as '5m'."""
    try:
        return units.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _live_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="neuron-top",
        description="Terminal monitor for Trainium-class accelerators. With no source it runs the built-in "
                    "device simulator. Subcommands: record, replay, export, import, diagnose, exporter, cluster "
                    "(neuron-top CMD -h).")
    _source_args(ap, "'-' to read neuron-monitor JSON lines from stdin")
    _sim_args(ap)
    ap.add_argument("--refresh", type=parse_duration, default=1.0, help="display refresh interval (default 1s)")
    _hint_args(ap)
    ap.add_argument("--record-dir", default=".", help="folder for recordings started with the r key")
    ap.add_argument("--escape-quits", action="store_true", help="escape quits too (the cluster view's node screen)")
    return ap


SIM_DEFAULTS = {"preset": "trn1.32xlarge", "scenario": "healthy", "seed": 0, "period": 1.0, "lnc": None}


def _sim_args(ap: argparse.ArgumentParser) -> None:
    """The built-in simulator's options. Their defaults are None, so that an option the user gave
    can be told from one they did not: given ones start a private simulator, and are refused with a
    source they would not apply to."""
    ap.add_argument("--preset", help="simulator preset (default trn1.32xlarge)")
    ap.add_argument("--lnc", type=int, choices=(1, 2), help="logical NeuronCore config of a trn2 preset")
    ap.add_argument("--scenario", help="simulator scenario (default healthy)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--period", type=parse_duration, help="simulator report period (default 1s)")


def _sim_given(args) -> list[str]:
    return [f"--{k}" for k in SIM_DEFAULTS if getattr(args, k, None) is not None]


def _sim_value(args, key: str):
    v = getattr(args, key, None)
    return SIM_DEFAULTS[key] if v is None else v


def _source_args(ap: argparse.ArgumentParser, positional_help: str) -> None:
    """Where reports come from, the same for the monitor, record and the exporter."""
    ap.add_argument("source", nargs="?", help=positional_help)
    ap.add_argument("--connect", metavar="PATH|HOST:PORT", help="a running devicesim; never starts one")
    ap.add_argument("--exec", dest="exec_cmd", metavar="CMD", help="run CMD (e.g. 'neuron-monitor -c mon.json') "
                                                                   "and read its stdout")


def _hint_args(ap: argparse.ArgumentParser) -> None:
    from .core.analysis.thresholds import DEFAULTS

    ap.add_argument("--hint-threshold", type=float, default=DEFAULTS.util_below,
                    help=f"utilisation %% below which bottleneck hints fire (default {DEFAULTS.util_below:g})")
    ap.add_argument("--hint-window", type=parse_duration, default=DEFAULTS.window_s,
                    help=f"the window hints look at (default {DEFAULTS.window_s:g}s)")


def _thresholds(args):
    """The hint thresholds with the user's --hint-threshold and --hint-window."""
    import dataclasses

    from .core.analysis.thresholds import DEFAULTS

    if not 0 < args.hint_threshold <= 100:
        raise UsageError(f"--hint-threshold must be a utilisation above 0 and at most 100 %, not {args.hint_threshold:g}")
    if args.hint_window <= 0:
        raise UsageError("--hint-window must be longer than 0 s")
    return dataclasses.replace(DEFAULTS, util_below=args.hint_threshold, window_s=args.hint_window)


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"neuron-top {cmd}")
    if cmd == "record":
        _source_args(ap, "'-' (stdin), a socket PATH or HOST:PORT; default: the running simulator, else a "
                         "built-in one")
        ap.add_argument("-o", "--output", required=True, help="profile file to create (.ntprof); with --cluster, "
                                                                 "a new folder (a profile per node and cluster.json)")
        ap.add_argument("--duration", type=parse_duration, help="stop after this long (e.g. 10m)")
        ap.add_argument("--count", type=int, help="stop after this many reports (from every node with --cluster)")
        ap.add_argument("--cluster", metavar="A,B,...|DIR", help="record every node of a cluster (as `neuron-top "
                                                                  "cluster --connect`)")
        _sim_args(ap)
    elif cmd == "exporter":
        _source_args(ap, "'-' (stdin), a socket PATH or HOST:PORT; default: the running simulator, else a "
                         "built-in one")
        ap.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT",
                        help="where /metrics is served (default 127.0.0.1:8000, loopback); with --cluster, node i "
                             "on PORT+i")
        ap.add_argument("--cluster", metavar="A,B,...|DIR", help="an exporter for every node of a cluster (as "
                                                                  "`neuron-top cluster --connect`), in one process")
        _sim_args(ap)
        _hint_args(ap)
    elif cmd == "replay":
        ap.add_argument("file", help="a profile, a neuron-monitor log (.jsonl, .gz, .zst), or a recorded cluster's "
                                     "folder")
        ap.add_argument("--speed", type=float, default=1.0, help="1/16 to 64 (default 1)")
        ap.add_argument("--start", type=parse_time, help="start position (seconds, 1:30, 5m)")
        ap.add_argument("--skip-bad", action="store_true", help="skip unreadable lines of a log")
        ap.add_argument("--escape-quits", action="store_true", help="escape quits too (the cluster view's node screen)")
        _hint_args(ap)
    elif cmd == "export":
        ap.add_argument("source", help="a profile, a neuron-monitor log, or - for stdin")
        ap.add_argument("-o", "--output", required=True,
                        help="the file to write (.csv, .parquet, .arrow/.feather), or - for CSV on stdout")
        ap.add_argument("--format", choices=("csv", "parquet", "arrow"),
                        help="default: from the output's extension (CSV for -, .csv, .txt or none)"),
        ap.add_argument("--fields", help="groups: util,flops,engines,hbm,links,vcpu,health,training,hints or all")
        ap.add_argument("--from", dest="t_from", type=parse_time, help="start time from the beginning")
        ap.add_argument("--to", dest="t_to", type=parse_time, help="end time from the beginning")
        ap.add_argument("--every", type=parse_duration, help="resample: mean over intervals of this length")
        ap.add_argument("--layout", choices=("wide", "long"), default="wide")
        ap.add_argument("--skip-bad", action="store_true", help="skip unreadable lines of a log")
        _hint_args(ap)
    elif cmd == "import":
        ap.add_argument("log", help="neuron-monitor JSON lines (.jsonl, .gz, .zst)")
        ap.add_argument("-o", "--output", required=True)
        ap.add_argument("--skip-bad", action="store_true")
    elif cmd == "cluster":
        where = ap.add_mutually_exclusive_group(required=True)
        where.add_argument("--connect", metavar="A,B,...|DIR",
                           help="the nodes' sockets (PATH or HOST:PORT, comma-separated), or a folder of node "
                                "sockets (devicesim cluster's)")
        where.add_argument("--hosts", metavar="FILE", help="a file of node addresses, one per line (# comments)")
        where.add_argument("--prometheus", metavar="URL", help="a Prometheus server scraping the nodes' exporters "
                           "(neuron-top exporter, or AWS's neuron-monitor-prometheus.py)")
        _hint_args(ap)
    elif cmd == "diagnose":
        ap.add_argument("source", help="a profile, a neuron-monitor log, or - for stdin")
        ap.add_argument("--json", action="store_true", help="print a JSON object (docs/hints.md)")
        _hint_args(ap)
        ap.add_argument("--skip-bad", action="store_true")
    return ap


def _stdout_gone() -> bool:
    """Whether standard output's reader has gone (a broken pipe that is ours to ignore), not a
    pipe of our own (the export's reader process, the simulator's socket). Unknown: gone."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))  # a pipe with no reader polls as an error
    except (AttributeError, OSError, ValueError):
        return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = _sub_parser(argv[0]).parse_args(argv[1:])
            return {"record": cmd_record, "replay": cmd_replay, "export": cmd_export, "import": cmd_import,
                    "exporter": cmd_exporter, "cluster": cmd_cluster,
                    "diagnose": cmd_diagnose}[argv[0]](args)
        return cmd_live(_live_parser().parse_args(argv))
    except UsageError as exc:
        print(f"neuron-top: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone():
            return 0  # `neuron-top export ... -o - | head`: the reader had enough
        print(f"neuron-top: error: a pipe between neuron-top's processes broke ({exc.strerror or exc})",
              file=sys.stderr)
        return 2
    except Exception as exc:
        from .core.telemetry.logs import InputError

        if isinstance(exc, (InputError, ValueError, OSError)):
            print(f"neuron-top: error: {exc}", file=sys.stderr)
            return 2
        raise


# -- sources -----------------------------------------------------------------------------------------
def _open_live_source(args, allow_embedded: bool = True, for_ui: bool = True):
    """(source, label, simulator or None). Stdin, a command, a socket, or the embedded simulator."""
    from .core.telemetry.simulator_process import EmbeddedSimulator, SimulatorError
    from .core.telemetry.sources import (
        CommandSource,
        SocketSource,
        StreamSource,
        default_socket_path,
        probe,
        unsafe_socket,
    )

    source_arg = getattr(args, "source", None)
    chosen = [name for name, given in (("SOURCE", source_arg), ("--connect", getattr(args, "connect", None)),
                                       ("--exec", getattr(args, "exec_cmd", None))) if given]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} both name a source; give one")
    sim_opts = _sim_given(args)
    if chosen and sim_opts:
        raise UsageError(f"{', '.join(sim_opts)} configure the built-in simulator and do not apply to "
                         f"{chosen[0]} (change a running simulator with `devicesim ctl --scenario S`)")
    if source_arg == "-":
        return StreamSource(_stdin_stream() if for_ui else sys.stdin.buffer, "stdin"), "stdin", None
    if getattr(args, "exec_cmd", None):
        return CommandSource(args.exec_cmd), f"exec: {args.exec_cmd}", None
    addr = getattr(args, "connect", None) or source_arg
    if addr:
        return SocketSource(addr), f"socket {addr}", None
    default = default_socket_path()
    why = unsafe_socket(default)
    if why:
        raise UsageError(f"not connecting to the default socket: {why}")
    if not sim_opts and probe(default):  # a simulator options asked for gets a private one of its own
        return SocketSource(default), f"sim @ {default}", None
    if not allow_embedded:
        raise UsageError("no simulator is running and none may be started")
    preset, scenario = _sim_value(args, "preset"), _sim_value(args, "scenario")
    lnc = _sim_value(args, "lnc")
    sim = EmbeddedSimulator(preset, scenario, _sim_value(args, "seed"), _sim_value(args, "period"),
                            extra_args=["--lnc", str(lnc)] if lnc else None)
    try:
        path = sim.start()
    except SimulatorError as exc:
        raise UsageError(f"cannot start the simulator: {exc}") from None
    return SocketSource(path), f"sim {preset} {scenario}", sim


def _stdin_stream():
    """Take the report stream from stdin and give the terminal back to the UI (keys come from /dev/tty)."""
    if sys.stdin.isatty():
        raise UsageError("'-' reads reports from stdin, but stdin is a terminal; pipe neuron-monitor into it")
    data_fd = os.dup(0)
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        raise UsageError("no terminal (/dev/tty) to read keys from while reports come on stdin") from None
    os.dup2(tty, 0)
    os.close(tty)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    return os.fdopen(data_fd, "rb")


def _require_tty() -> None:
    if not sys.stdout.isatty():
        raise UsageError("stdout is not a terminal; for scripts use 'neuron-top record', 'export' or 'diagnose'")
    if os.environ.get("TERM") == "dumb":
        raise UsageError("TERM=dumb cannot draw a full-screen view; run it in a terminal "
                         "with cursor control (TERM=xterm-256color, tmux), or use 'record', 'export' or 'diagnose'")


def cmd_cluster(args) -> int:
    from .core.cluster import ClusterMonitor, PrometheusCluster, addresses

    if args.prometheus:
        if not args.prometheus.startswith(("http://", "https://")):
            raise UsageError(f"--prometheus {args.prometheus}: give the server's URL, e.g. http://127.0.0.1:9090")
        _require_tty()
        from .ui.cluster import ClusterApp

        app = ClusterApp(PrometheusCluster(args.prometheus, _thresholds(args)))
        app.run()
        return app.return_code or 0
    if args.hosts:
        try:
            with open(args.hosts, encoding="utf-8") as f:
                addrs = [x.split("#")[0].strip() for x in f]
        except OSError as exc:
            raise UsageError(f"--hosts {args.hosts}: {exc.strerror or exc}") from None
        addrs = [a for a in addrs if a]
        if not addrs:
            raise UsageError(f"--hosts {args.hosts}: no addresses in the file")
    else:
        try:
            addrs = addresses(args.connect)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _require_tty()
    from .ui.cluster import ClusterApp

    app = ClusterApp(ClusterMonitor(addrs, _thresholds(args)))
    app.run()
    return app.return_code or 0


def cmd_live(args) -> int:
    _require_tty()
    from .core.store.recorder import Recorder
    from .ui.app import NeuronTopApp, NodeApp

    source, label, sim = _open_live_source(args)

    def recorder_factory():
        name = time.strftime("neuron-top-%Y%m%d-%H%M%S.ntprof")
        return Recorder(os.path.join(args.record_dir, name), {"source": json.dumps({"kind": "live", "label": label})})

    signal.signal(signal.SIGHUP, lambda *_: (sim.stop() if sim else None, os._exit(129)))
    signal.signal(signal.SIGTERM, lambda *_: (sim.stop() if sim else None, os._exit(143)))
    app = (NodeApp if args.escape_quits else NeuronTopApp)(source=source, source_label=label, th=_thresholds(args),
                                                         refresh_s=args.refresh, recorder_factory=recorder_factory)
    try:
        app.run()
    finally:
        source.close()
        if sim:
            sim.stop()
    return app.return_code or 0  # (1 when the app stopped on an unexpected error: never a quiet 0)


def _load_timeline(path: str, skip_bad: bool):
    from .core.store.profile import LogTimeline, Profile
    from .core.telemetry.logs import log_samples, sniff

    if path != "-" and sniff(path) == "profile":
        return Profile(path)
    return LogTimeline(list(log_samples(path, skip_bad, _warn_skip)))


def _warn_skip(lineno: int, msg: str) -> None:
    print(f"neuron-top: skipped line {lineno}: {msg}", file=sys.stderr)


def cmd_replay(args) -> int:
    from .core.cluster_profiles import ClusterReplay, is_cluster
    from .core.store.replay import SPEEDS, ReplayClock
    from .ui.app import NeuronTopApp, NodeApp

    if args.speed < SPEEDS[0] or args.speed > SPEEDS[-1]:
        raise UsageError(f"--speed must be between 1/16 and 64, not {args.speed:g}")
    if is_cluster(args.file):
        rep = ClusterReplay(args.file, _thresholds(args))
        rep.speed = args.speed
        if args.start:
            rep.seek(args.start)
        _require_tty()
        from .ui.cluster import ClusterApp

        capp = ClusterApp(rep)
        capp.run()
        return capp.return_code or 0
    tl = _load_timeline(args.file, args.skip_bad)
    _require_tty()
    clock = ReplayClock(tl, speed=args.speed, start_s=args.start)
    app = (NodeApp if args.escape_quits else NeuronTopApp)(replay=clock, source_label=f"replay {os.path.basename(args.file)}",
                                                         th=_thresholds(args))
    app.run()
    return app.return_code or 0


def _samples_of(path: str, skip_bad: bool):
    """(samples iterator, start unix time or None) for a profile, a log or stdin."""
    from .core.store.profile import Profile
    from .core.telemetry.logs import log_samples, sniff

    if path != "-" and sniff(path) == "profile":
        prof = Profile(path)
        start = prof.meta.get("start_unix")
        return (prof.iter_samples(skip_bad=skip_bad, on_skip=lambda m: print(f"neuron-top: skipped: {m}", file=sys.stderr)),
                float(start) if start else None)
    # Logs carry no absolute time; export estimates it from the file's mtime.
    return log_samples(path, skip_bad, _warn_skip), None


def cmd_export(args) -> int:
    # The export does no linear algebra: one BLAS thread, not OpenBLAS's pool, whose threads spin for
    # 0.1 s of CPU as numpy loads (a core the export needs when the machine is busy). Before numpy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .core.export.exporter import Exporter, parse_fields
    from .core.export.reading import feed, open_input
    from .core.export.writers import CsvSink, FileSink

    gc.freeze()  # the modules' objects stay: the collector's full passes need not walk them again

    try:
        groups = parse_fields(args.fields)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fmt = _export_format(args)
    if args.t_from is not None and args.t_to is not None and args.t_to <= args.t_from:
        raise UsageError(f"--to {args.t_to:g} s is not after --from {args.t_from:g} s")
    th = _thresholds(args)
    cluster = os.path.isdir(args.source)  # (the cluster module only for a folder: it costs the import)
    if cluster:
        from .core.cluster_profiles import is_cluster

        cluster = is_cluster(args.source)
    inp = None if cluster else open_input(args.source, args.skip_bad, _warn_skip)
    out = sys.stdout if args.output == "-" else None
    tmp = None
    if out is None:
        tmp = args.output + ".part"
        out = open(tmp, "wb", buffering=1 << 20)  # noqa: SIM115
    sink = CsvSink(out) if fmt == "csv" else FileSink(out, fmt)
    opts = dict(layout=args.layout, every_s=args.every, t_from=args.t_from, t_to=args.t_to, th=th)
    ex = None if cluster else Exporter(sink, groups, **opts)
    progress = None
    if tmp is not None and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn

        progress = Progress(TextColumn("exporting"), BarColumn(), TextColumn("{task.completed} samples"),
                            transient=True)
    try:
        if progress:
            progress.start()
            task = progress.add_task("export", total=None)
        if cluster:  # every node's rows, a `node` column first
            from .core.cluster_profiles import export as export_cluster

            rows = export_cluster(args.source, sink, groups, **opts)
        else:
            assert inp is not None and ex is not None
            rows = feed(inp, ex, (lambda k: progress.update(task, completed=k)) if progress else None)
        sink.close()
        if rows == 0:
            raise UsageError(_empty_export(args))
    except BaseException as exc:
        if tmp:
            try:
                out.close()
            except OSError:
                pass
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError) and exc.errno is not None:
            where = "stdout" if tmp is None else args.output
            raise UsageError(f"{where}: write failed: {exc.strerror or exc}") from None
        raise
    finally:
        if progress:
            progress.stop()
    if tmp:
        try:
            out.close()
            os.replace(tmp, args.output)
        except OSError as exc:
            raise UsageError(f"{args.output}: write failed: {exc}") from None
        print(f"neuron-top: wrote {rows} row{'' if rows == 1 else 's'} to {args.output}", file=sys.stderr)
    return 0


CSV_EXTENSIONS = ("", ".csv", ".txt")


def _export_format(args) -> str:
    """csv, parquet or arrow: --format, else the output's extension; checks the output's folder."""
    from .core.export.writers import FORMATS

    ext = os.path.splitext(args.output)[1].lower() if args.output != "-" else ""
    by_ext = "csv" if ext in CSV_EXTENSIONS else FORMATS.get(ext)
    if args.output != "-":
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise UsageError(f"{args.output}: folder {folder} does not exist")
    fmt = args.format or by_ext
    if fmt is None:
        raise UsageError(f"{args.output}: export writes .csv, .parquet or .arrow/.feather files, not {ext} "
                         "(or give --format)")
    if args.format and by_ext and args.format != by_ext and args.output != "-":
        raise UsageError(f"{args.output}: --format {args.format} does not match the {ext or 'missing'} extension")
    if fmt != "csv":
        if args.output == "-":
            raise UsageError(f"--format {fmt} writes a file: give -o FILE (only CSV goes to stdout)")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(f"{fmt} export needs pyarrow: pip install 'neuron-top[export]'") from None
    return fmt


def _empty_export(args) -> str:
    rng = []
    if args.t_from is not None:
        rng.append(f"--from {args.t_from:g} s")
    if args.t_to is not None:
        rng.append(f"--to {args.t_to:g} s")
    if not rng:
        return f"{args.source}: no reports to export (the input is empty)"
    return f"{args.source}: no reports in the range {' '.join(rng)} (times count from the first report)"


def cmd_import(args) -> int:
    from .core.store.recorder import import_log
    from .core.telemetry.units import plural

    n = import_log(args.log, args.output, args.skip_bad, _warn_skip)
    print(f"neuron-top: imported {plural(n, 'report')} into {args.output}", file=sys.stderr)
    return 0


def _diagnose_cluster(args) -> int:
    from .core.cluster_profiles import diagnose as diagnose_cluster
    from .core.cluster_profiles import read_index

    try:
        nodes = read_index(args.source)
        found = diagnose_cluster(args.source, _thresholds(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"source": args.source, "nodes": [n["name"] for n in nodes], "findings": found}, indent=2))
    else:
        print(f"{args.source}: a cluster of {len(nodes)} nodes")
        if not found:
            print("  no cluster finding: every node reported and none held the others back")
        for f in found:
            print(f"  {f['start_s']:.0f}-{f['end_s']:.0f} s ({f['share_of_run'] * 100:.0f} % of the run) "
                  f"{f['severity']}: {f['title']}")
    return 1 if found else 0


def cmd_diagnose(args) -> int:
    from .core.analysis.diagnose import diagnose, format_text
    from .core.cluster_profiles import is_cluster

    if is_cluster(args.source):
        return _diagnose_cluster(args)
    samples, _ = _samples_of(args.source, args.skip_bad)
    try:
        d = diagnose(samples, _thresholds(args))
    except ValueError as exc:
        from .core.telemetry.logs import InputError

        if isinstance(exc, InputError):
            raise
        raise UsageError(f"{args.source}: {exc}") from None
    if args.json:
        out = d.to_dict()
        out["source"] = args.source
        print(json.dumps(out, indent=2))
    else:
        print(format_text(d, args.source))
    return 0 if d.healthy else 1


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, for example 127.0.0.1:8000")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _serve_metrics(host: str, port: int, what: str):
    """A collector and its /metrics server on HOST:PORT; a port in use is a one-line error."""
    from prometheus_client import CollectorRegistry, start_http_server

    from .core.export.prometheus import NeuronCollector

    collector = NeuronCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"{what} {host}:{port}: {exc.strerror or exc}") from None
    return collector, server


def _export_reports(source, collector, th, who: str = "neuron-top exporter") -> None:
    """A source's reports into a collector until the source ends (or is closed)."""
    from .core.session import Session
    from .core.telemetry.sample import DecodeError
    from .core.telemetry.sources import Status

    session = Session(th)

    def bad(exc: DecodeError) -> None:
        print(f"{who}: skipped a bad report: {exc}", file=sys.stderr)

    for ev in session.run(source.events(), on_bad=bad):
        if isinstance(ev, Status):
            if ev.state in ("lost", "ended", "error"):
                print(f"{who}: {ev.detail}", file=sys.stderr)
                if ev.state in ("ended", "error"):
                    break
            continue
        rep = session.decoder.last_report
        if rep is not None:
            collector.update(rep, ev, session.shown, session.hints.lost)


def _stop_server(server) -> None:
    if isinstance(server, tuple):  # (prometheus-client >= 0.20 returns the server and its thread)
        server[0].shutdown()


def cmd_exporter(args) -> int:
    """Serve /metrics for Prometheus: AWS's neuron-monitor-prometheus.py series and neuron-top's own."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError("the exporter needs prometheus-client: pip install 'neuron-top[prometheus]'") from None
    host, port = _listen_address(args.listen)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"neuron-top exporter: serving on {host}, not only loopback: anyone who reaches it reads the metrics",
              file=sys.stderr)
    th = _thresholds(args)
    if args.cluster:
        return _exporter_cluster(args, host, port, th)
    collector, server = _serve_metrics(host, port, "--listen")
    source, label, sim = _open_live_source(args, for_ui=False)
    signal.signal(signal.SIGTERM, lambda *_: source.close())
    print(f"neuron-top exporter: {label} -> http://{host}:{port}/metrics", file=sys.stderr)
    try:
        _export_reports(source, collector, th)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        if sim:
            sim.stop()
        _stop_server(server)
    return 0


def _cluster_sources(args) -> list[str]:
    """The nodes `--cluster` names (record, exporter): no other source or simulator option with it."""
    from .core.cluster import addresses

    chosen = [n for n, v in (("SOURCE", args.source), ("--connect", args.connect), ("--exec", args.exec_cmd)) if v]
    if chosen or _sim_given(args):
        raise UsageError(f"--cluster names the sources; {', '.join(chosen + _sim_given(args))} do not apply to it")
    try:
        return addresses(args.cluster)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _exporter_cluster(args, host: str, base: int, th) -> int:
    """An exporter per node of a cluster, node i on port BASE+i, in one process (a thread per node)."""
    import threading

    from .core.telemetry.sources import SocketSource

    addrs = _cluster_sources(args)
    if base + len(addrs) - 1 > 65535:
        raise UsageError(f"--listen {args.listen}: {len(addrs)} nodes need ports {base}-{base + len(addrs) - 1}")
    served, sources = [], []
    try:
        for i, addr in enumerate(addrs):
            served.append(_serve_metrics(host, base + i, f"node {addr}: port"))
            sources.append(SocketSource(addr))
        for i, (addr, src, (collector, _)) in enumerate(zip(addrs, sources, served, strict=True)):
            threading.Thread(target=_export_reports, args=(src, collector, th, f"neuron-top exporter ({addr})"),
                             daemon=True).start()
            print(f"neuron-top exporter: {addr} -> http://{host}:{base + i}/metrics", file=sys.stderr)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        for src in sources:
            src.close()
        for _, server in served:
            _stop_server(server)
    return 0


def _record_cluster(args) -> int:
    import threading

    from .core.cluster_profiles import record

    addrs = _cluster_sources(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        counts = record(addrs, args.output, stop, args.duration, args.count)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .core.telemetry.units import plural

    empty = [n for n, c in counts.items() if c == 0]
    print(f"neuron-top: recorded {plural(len(counts), 'node')} to {args.output} "
          f"({', '.join(f'{n} {c}' for n, c in counts.items())} reports)", file=sys.stderr)
    if empty:
        print(f"neuron-top record: nothing from {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


def cmd_record(args) -> int:
    if args.cluster:
        return _record_cluster(args)
    from .core.session import Session
    from .core.store.recorder import Recorder
    from .core.telemetry.sample import DecodeError
    from .core.telemetry.sources import Status

    source, label, sim = _open_live_source(args, for_ui=False)
    meta = {"source": json.dumps({"kind": "record", "label": label}), "start_unix": f"{time.time():.3f}"}
    if sim:
        meta["simulator"] = json.dumps({"preset": _sim_value(args, "preset"), "scenario": _sim_value(args, "scenario"),
                                        "seed": _sim_value(args, "seed"), "period_s": _sim_value(args, "period"),
                                        "lnc": _sim_value(args, "lnc")})
    rec = Recorder(args.output, meta)
    stop = {"flag": False}

    def _stop(*_):
        stop["flag"] = True
        source.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    session = Session(recorder=rec)
    n = 0
    t_first = None

    def bad(exc: DecodeError) -> None:
        print(f"neuron-top record: skipped a bad report: {exc}", file=sys.stderr)

    try:
        for ev in session.run(source.events(), on_bad=bad):
            if stop["flag"]:
                break
            if isinstance(ev, Status):
                if ev.state == "lost" and not session.connected:
                    # nothing to record from yet: a wrong address is an error, not a wait forever
                    raise UsageError(f"{ev.detail} (nothing recorded)")
                if ev.state in ("lost", "ended", "error"):
                    print(f"neuron-top record: {ev.detail}", file=sys.stderr)
                    if ev.state in ("ended", "error"):
                        break
                continue
            if t_first is None:
                t_first = ev.time_s
            n += 1
            if (args.count and n >= args.count) or (args.duration and ev.time_s - t_first >= args.duration - 1e-9):
                break
    finally:
        try:
            rec.close()
            if not session.connected and n == 0:
                os.unlink(args.output)  # never reached its source: leave no empty profile behind
        finally:
            source.close()
            if sim:
                sim.stop()
    from .core.telemetry.units import plural

    print(f"neuron-top: recorded {plural(n, 'report')} to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
