"""The telemetry server: newline-delimited JSON over a Unix socket (or TCP when asked).

Protocol (docs/protocol.md): the server sends a hello line, then one report per line. A client may
send lines too: a hello naming the protocol version it speaks, and control requests. Each client
has a bounded queue; a slow client loses its oldest reports (and is told how many) but never slows
the simulator or the other clients.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import os
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass

from .engine import PROTOCOL, PROTOCOL_VERSION, Engine, encode

MAX_LINE = 64 * 1024  # longest request line a client may send
QUEUE_REPORTS = 256  # reports buffered per client before the oldest are dropped


class ServeError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def default_socket_path() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(base, "neuron-top") if base else f"/tmp/neuron-top-{os.getuid()}"
    return os.path.join(folder, "devicesim.sock")


def prepare_socket_path(path: str) -> None:
    """Create the private folder; refuse if a live server owns the path, else remove a stale file."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.stat(folder)
    if st.st_uid != os.getuid():
        raise ServeError(f"socket folder {folder} belongs to another user")
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ServeError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left by a crashed simulator
        else:
            raise ServeError(f"another simulator is already serving on {path}")
        finally:
            probe.close()


@dataclass(eq=False)
class Client:
    writer: asyncio.StreamWriter
    can_control: bool
    queue: collections.deque
    wake: asyncio.Event
    dropped: int = 0
    closed: bool = False


class Server:
    def __init__(self, engine: Engine, speed: float | None, token: str | None = None,
                 count: int | None = None, duration_s: float | None = None,
                 queue_reports: int = QUEUE_REPORTS) -> None:
        self.queue_reports = queue_reports
        self.engine = engine
        self.speed = speed  # None: as fast as possible
        self.token = token
        self.count = count
        self.duration_s = duration_s
        self.clients: set[Client] = set()
        self.stop_event = asyncio.Event()

    # -- producer ----------------------------------------------------------------------------------
    async def produce(self) -> None:
        period = self.engine.cfg.period_s
        start = time.monotonic()
        if self.engine.cfg.wall_clock:
            # The k-th report is sent at start + (k-1)p and its time_s is the window's end, kp:
            # shift the clock so that a report's timestamp is the moment it is written.
            self.engine.epoch = time.time() - self.engine.sim_time - period
        produced = 0
        while not self.stop_event.is_set():
            report = self.engine.step_window()
            line = encode(report) + b"\n"
            for c in list(self.clients):
                if len(c.queue) == c.queue.maxlen:
                    c.dropped += 1
                c.queue.append(line)
                c.wake.set()
            produced += 1
            if self.count is not None and produced >= self.count:
                break
            if self.duration_s is not None and self.engine.sim_time >= self.duration_s:
                break
            if self.speed is None:
                await asyncio.sleep(0)
            else:
                target = start + produced * period / self.speed
                delay = target - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.stop_event.wait(), delay)
        # Let clients drain what they have before shutting down.
        for _ in range(50):
            if all(not c.queue for c in self.clients):
                break
            await asyncio.sleep(0.02)
        self.stop_event.set()

    # -- clients ---------------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_unix: bool) -> None:
        client = Client(writer, is_unix, collections.deque(maxlen=self.queue_reports), asyncio.Event())
        writer.write(json.dumps(self.engine.hello(), separators=(",", ":")).encode() + b"\n")
        self.clients.add(client)
        sender = asyncio.create_task(self._send(client))
        try:
            while not client.closed:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    await self._fail(client, f"request line longer than {MAX_LINE} bytes")
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                await self._request(client, line)
        finally:
            client.closed = True
            client.wake.set()
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, c: Client) -> None:
        try:
            while not c.closed:
                await c.wake.wait()
                c.wake.clear()
                if c.dropped:
                    n, c.dropped = c.dropped, 0
                    c.writer.write(json.dumps({"type": "dropped", "count": n}).encode() + b"\n")
                while c.queue:
                    c.writer.write(c.queue.popleft())
                    await c.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            c.closed = True

    async def _fail(self, c: Client, message: str) -> None:
        with contextlib.suppress(Exception):
            c.writer.write(json.dumps({"type": "error", "error": message}).encode() + b"\n")
            await c.writer.drain()
        c.closed = True

    async def _request(self, c: Client, line: bytes) -> None:
        try:
            req = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            await self._fail(c, f"invalid JSON in request: {exc.msg if hasattr(exc, 'msg') else exc}")
            return
        if not isinstance(req, dict) or "type" not in req:
            await self._fail(c, "request must be a JSON object with a 'type' field")
            return
        kind = req["type"]
        if kind == "hello":
            if req.get("protocol") != PROTOCOL or req.get("version") != PROTOCOL_VERSION:
                await self._fail(c, f"unsupported protocol {req.get('protocol')!r} version {req.get('version')!r}; "
                                    f"this server speaks {PROTOCOL} version {PROTOCOL_VERSION}")
            return
        if kind == "control":
            allowed = c.can_control or (
                self.token is not None and hmac.compare_digest(str(req.get("token", "")), self.token))
            if not allowed:
                await self._fail(c, "control requests need the Unix socket or the server's token")
                return
            try:
                state = self.engine.control(req)
            except (ValueError, TypeError) as exc:
                c.writer.write(json.dumps({"type": "control_error", "error": str(exc)}).encode() + b"\n")
                return
            c.writer.write(json.dumps({"type": "control_ok", "state": state}).encode() + b"\n")
            return
        await self._fail(c, f"unknown request type {kind!r}")


async def _serve_async(server: Server, socket_path: str | None, listen: tuple[str, int] | None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, server.stop_event.set)
    if listen:
        srv = await asyncio.start_server(lambda r, w: server.handle(r, w, False), listen[0], listen[1],
                                         limit=MAX_LINE)
        where = f"{listen[0]}:{srv.sockets[0].getsockname()[1]}"
    else:
        assert socket_path
        old = os.umask(0o177)  # socket created 0600
        try:
            srv = await asyncio.start_unix_server(lambda r, w: server.handle(r, w, True), socket_path,
                                                  limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(socket_path, 0o600)
        where = socket_path
    print(f"devicesim: serving {server.engine.preset.name} scenario {server.engine.scenario.name} on {where}",
          file=sys.stderr, flush=True)
    producer = asyncio.create_task(server.produce())
    try:
        await server.stop_event.wait()
    finally:
        producer.cancel()
        srv.close()
        for c in list(server.clients):
            c.closed = True
            with contextlib.suppress(Exception):
                c.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(srv.wait_closed(), 1.0)
        if socket_path and not listen:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)


def serve(engine: Engine, speed: float | None, socket_path: str | None = None,
          listen: tuple[str, int] | None = None, token: str | None = None,
          count: int | None = None, duration_s: float | None = None, queue_reports: int = QUEUE_REPORTS) -> None:
    if socket_path and not listen:
        prepare_socket_path(socket_path)
    server = Server(engine, speed, token, count, duration_s, queue_reports)
    asyncio.run(_serve_async(server, socket_path, listen))


def stream_stdout(engine: Engine, speed: float | None, count: int | None, duration_s: float | None) -> None:
    """--stdout: reports only, one JSON document per line, as neuron-monitor prints them."""
    out = sys.stdout.buffer
    start = time.monotonic()
    produced = 0
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    if engine.cfg.wall_clock:
        engine.epoch = time.time() - engine.sim_time - engine.cfg.period_s
    try:
        while not stop:
            out.write(encode(engine.step_window()) + b"\n")
            out.flush()
            produced += 1
            if (count is not None and produced >= count) or (duration_s is not None and engine.sim_time >= duration_s):
                break
            if speed is not None:
                delay = start + produced * engine.cfg.period_s / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = None  # type: ignore[assignment]
        os._exit(0)
    except KeyboardInterrupt:
        pass
