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
from dataclasses import dataclass, field

from .engine import PROTOCOL, PROTOCOL_VERSION, Engine, encode

MAX_LINE = 64 * 1024  # longest request line a client may send
QUEUE_REPORTS = 256  # reports buffered per client before the oldest are dropped
MAX_CLIENTS = 64  # connections served at once (each holds kernel buffers)
SNDBUF_BYTES = 256 * 1024  # each client socket's kernel send buffer (a never-reading client holds this much)
REPLIES_MAX = 16  # control replies queued for a client before its requests stop being read
LOG_EVERY_S = 10.0  # one line per kind of failure at most this often


class ServeError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def default_socket_path() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(base, "neuron-top") if base else f"/tmp/neuron-top-{os.getuid()}"
    return os.path.join(folder, "devicesim.sock")


def unsafe_socket(path: str) -> str | None:
    """Why a socket in a shared place must not be trusted (not our 0700 folder, not our socket), or None."""
    folder = os.path.dirname(path) or "."
    try:
        fst, sst = os.lstat(folder), os.lstat(path)
    except OSError:
        return None
    uid = os.getuid()
    if not stat.S_ISDIR(fst.st_mode) or fst.st_uid != uid or fst.st_mode & 0o077:
        return f"{folder} is not a private folder of this user (owner uid {fst.st_uid}, mode {fst.st_mode & 0o777:o})"
    if not stat.S_ISSOCK(sst.st_mode) or sst.st_uid != uid:
        return f"{path} is not a socket of this user (owner uid {sst.st_uid})"
    return None


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
    replies: collections.deque = field(default_factory=collections.deque)  # control replies, sent first

    def reply(self, msg: dict) -> None:
        self.replies.append(json.dumps(msg).encode() + b"\n")
        self.wake.set()


class RateLimitedLog:
    """One stderr line per kind of failure per LOG_EVERY_S, with how many were not printed."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def __call__(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -LOG_EVERY_S) < LOG_EVERY_S:
            self.held[kind] = self.held.get(kind, 0) + 1
            return
        self.last[kind] = now
        more = self.held.pop(kind, 0)
        print(f"devicesim: {text}" + (f" (and {more} more like it)" if more else ""), file=sys.stderr, flush=True)


class Server:
    def __init__(self, engine: Engine, speed: float | None, token: str | None = None,
                 count: int | None = None, duration_s: float | None = None,
                 queue_reports: int = QUEUE_REPORTS, max_clients: int = MAX_CLIENTS) -> None:
        self.queue_reports = queue_reports
        self.max_clients = max_clients
        self.log = RateLimitedLog()
        self.failure: str | None = None  # the engine raised: every client was told, the exit is non-zero
        self.engine = engine
        self.speed = speed  # None: as fast as possible
        self.token = token
        self.count = count
        self.duration_s = duration_s
        self.clients: set[Client] = set()
        self.stop_event = asyncio.Event()
        self.down = False  # a cluster node that is down: no reports, connections refused (cluster.py)

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
            try:
                line = encode(self.engine.step_window()) + b"\n"
            except Exception as exc:  # a bug of ours: say so to everyone rather than serve a dead stream
                self.failure = f"the simulator engine failed: {type(exc).__name__}: {exc}"
                for c in list(self.clients):
                    c.reply({"type": "error", "error": self.failure})
                    c.closed = True
                await asyncio.sleep(0.2)  # (the senders write the notice)
                self.stop_event.set()
                return
            if self.down:  # the node died: its connections drop, its reports go nowhere
                for c in list(self.clients):
                    c.closed = True
                    c.wake.set()
                    with contextlib.suppress(Exception):
                        c.writer.transport.abort()
                    self.clients.discard(c)
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
    def _make_room(self, writer: asyncio.StreamWriter) -> bool:
        """At the client cap, the slowest client (the most reports dropped, a full queue) makes room;
        when every client keeps up, the newcomer is refused."""
        if len(self.clients) < self.max_clients:
            return True
        slow = [c for c in self.clients if c.dropped or len(c.queue) == c.queue.maxlen]
        if not slow:
            with contextlib.suppress(Exception):
                writer.write(json.dumps({"type": "error", "error": f"server full: {self.max_clients} clients "
                                                                   "(devicesim serve --max-clients)"}).encode() + b"\n")
                writer.close()
            self.log("full", f"refused a client: {self.max_clients} clients connected")
            return False
        worst = max(slow, key=lambda c: (c.dropped, len(c.queue)))
        worst.reply({"type": "error", "error": "disconnected: too slow a reader while the server is full"})
        worst.closed = True
        worst.queue.clear()
        self.clients.discard(worst)
        with contextlib.suppress(Exception):
            worst.writer.transport.abort()
        self.log("slow", "dropped the slowest client to make room for a new one")
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_unix: bool) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)
        if self.down or not self._make_room(writer):
            if self.down:
                writer.transport.abort()
            return
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
                while len(client.replies) >= REPLIES_MAX and not client.closed:
                    await asyncio.sleep(0.05)  # a controller that does not read: stop reading its requests
        finally:
            client.closed = True
            client.wake.set()
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, c: Client) -> None:
        try:
            while not c.closed or c.replies:
                await c.wake.wait()
                c.wake.clear()
                while c.replies:
                    c.writer.write(c.replies.popleft())
                    await c.writer.drain()
                if c.closed:
                    break
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
        except (ValueError, RecursionError) as exc:  # bad JSON, nesting too deep, an integer too long
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(";")[0][:80]
            await self._fail(c, f"invalid JSON in request: {detail or type(exc).__name__}")
            return
        if not isinstance(req, dict) or "type" not in req:
            await self._fail(c, "request must be a JSON object with a 'type' field")
            return
        kind = req["type"]
        if kind == "hello":
            version = req.get("version")
            if req.get("protocol") != PROTOCOL or type(version) is not int or version != PROTOCOL_VERSION:
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
                c.reply({"type": "control_error", "error": str(exc)})
                return
            c.reply({"type": "control_ok", "state": state})
            return
        await self._fail(c, f"unknown request type {kind!r}")


async def _serve_async(server: Server, socket_path: str | None, listen: tuple[str, int] | None) -> None:
    loop = asyncio.get_running_loop()
    # asyncio's own failures (accept() out of file descriptors, a reset connection) as one short
    # line per kind, not a traceback per event
    loop.set_exception_handler(lambda _loop, ctx: server.log(
        str(ctx.get("message", "error"))[:60], f"{ctx.get('message', 'error')}: {ctx.get('exception', '')}"))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # (RuntimeError: not the main thread)
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
          count: int | None = None, duration_s: float | None = None, queue_reports: int = QUEUE_REPORTS,
          max_clients: int = MAX_CLIENTS) -> None:
    if socket_path and not listen:
        prepare_socket_path(socket_path)
    server = Server(engine, speed, token, count, duration_s, queue_reports, max_clients)
    asyncio.run(_serve_async(server, socket_path, listen))
    if server.failure:
        raise ServeError(server.failure)


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
            sys.stdout = None
        os._exit(0)
    except KeyboardInterrupt:
        pass
