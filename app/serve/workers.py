"""``serve --workers N``: N server processes on one port, under uvicorn's supervisor.

The parent binds the port once and runs ``uvicorn.supervisors.Multiprocess``: each worker
is a fresh process (spawned, not forked) that sets up its logging, builds its own app and
store (with PostgreSQL the database, not any process, decides the rules) and accepts on
the shared socket. The supervisor's signals: TERM or INT stops every worker gracefully,
HUP restarts them one by one on the config file as it is then, TTIN and TTOU add and
remove one; a worker that dies is replaced.

The supervisor itself (app/serve/supervisor.py) reads and checks the config once, in the
parent; this module holds what a worker is and the socket they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from app.config.reload import (
    ConfigFile,
    Reloaded,
    ReloadIncomplete,
    supervised_by,
)
from app.config.schema import Config, ConfigError
from app.observe.logs import configure_logging

log = structlog.get_logger("app.workers")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# How long a new worker may take to serve (spawn, imports, its database pool, the
# lifespan), and a live one to answer the supervisor's ping. Two busy cores and a
# PostgreSQL pool take seconds, where uvicorn's default is 5 s.
WORKER_START_SECONDS = 30

# How long a port in use may take to come free before the server gives up on it.
PORT_PATIENCE_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every worker is started from; pickled into each new process."""

    config: Config
    config_file: ConfigFile | None
    log_level: str
    # Builds the worker's uvicorn settings and app from the config (a module-level
    # function, so that it pickles); raises Refusal when the worker cannot serve.
    build: Callable[[Config], uvicorn.Config]
    parent: int = dataclasses.field(default_factory=os.getpid)


def ensure_free(host: str, port: int, *, patience: float = PORT_PATIENCE_SECONDS) -> None:
    """Raise OSError if anything listens on the port, for longer than ``patience``.

    A server whose sockets allow SO_REUSEPORT (an older multi-worker deployment left
    running) would otherwise silently share the traffic with this one. The patience
    covers a restart right after ``kill -9`` of a parent, whose workers are still closing
    their sockets for a fraction of a second.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            with _socket(host) as probe:
                probe.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def listening_socket(host: str, port: int) -> socket.socket:
    """The one socket every worker accepts on: the parent holds it, so connections that
    arrive while a worker is replaced wait in its backlog for the others."""
    sock = _socket(host)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock




class Worker(Process):
    """One server process; beside uvicorn's ping pipe, a pipe for reload requests."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket],
                 plan: Plan) -> None:
        self.plan = plan
        self.control, self._control_child = Pipe()
        super().__init__(config, sockets)

    def pong(self) -> None:
        # Answers from the start: the server is built after the config is unpickled.
        self.child_conn.recv()
        server = self._server
        self.child_conn.send(server is not None and server.started)

    def always_pong(self) -> None:
        # The parent closes the pipe when it retires this worker.
        with contextlib.suppress(EOFError, OSError):
            super().always_pong()

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """The worker's life, in the new process."""
        _stop_with(self.plan.parent)
        # The supervisor owns SIGHUP; the whole process group getting one (a closed
        # terminal) must not end the workers under it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        threading.Thread(target=self.always_pong, daemon=True).start()
        # Here, not in the parent: the writer's flush thread lives in this process.
        writer = configure_logging(self.plan.log_level,
                                   process={"process_id": os.getpid()})
        code = STARTUP_FAILURE
        try:
            code = self._serve(sockets or [])
        finally:
            # A process of multiprocessing leaves without running atexit.
            writer.flush()
        sys.exit(code)

    def _serve(self, sockets: list[socket.socket]) -> int:
        from app.serve.exits import Refusal

        try:
            server = _WorkerServer(self.plan.build(self.plan.config))
        except Refusal as exc:
            log.error("worker_not_started", error=exc.line)
            return STARTUP_FAILURE
        supervised_by(_Link(self._control_child, server))
        # uvicorn re-raises the signal that stopped it once its graceful shutdown is done;
        # by then everything is flushed and closed.
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, lambda *_: None)
        self._server = server
        try:
            server.run(sockets=sockets)
        except SystemExit:  # uvicorn's exit on a start-up that failed, after its log lines
            return STARTUP_FAILURE
        return 0 if server.started else STARTUP_FAILURE

    def close_control(self) -> None:
        self.control.close()
        self._control_child.close()


class _WorkerServer(uvicorn.Server):
    """uvicorn's server, telling when it no longer accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopped_accepting = asyncio.Event()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # as uvicorn's shutdown does first; closing twice is harmless
        self.stopped_accepting.set()
        await super().shutdown(sockets)


class _Link:
    """A worker's end of its reload pipe: ``app.config.reload.Supervisor``."""

    def __init__(self, conn: Connection, server: _WorkerServer) -> None:
        self._conn = conn
        self._server = server
        self._lock: asyncio.Lock | None = None

    async def reload(self, *, force: bool) -> Reloaded:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._server.stopped_accepting.is_set():
                raise ReloadIncomplete("this worker is stopping after a restart: send the "
                                       "reload again")
            self._conn.send(("reload", force))
            await _readable(self._conn)
            answer = self._conn.recv()
        match answer:
            case ("reloaded", changes, text):
                # This worker was replaced too: answer once it accepts no more
                # connections, so that every request sent after the answer meets a
                # worker on the new config.
                await self._server.stopped_accepting.wait()
                return Reloaded(changes, text)
            case ("refused", line):
                raise ConfigError(line)
            case (_, line):
                raise ReloadIncomplete(line)
        raise AssertionError(answer)


async def _readable(conn: Connection) -> None:
    """Wait for ``conn`` without a thread (one blocked in ``recv`` would hold up the
    worker's exit)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


def _stop_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when ``parent`` dies, however it dies.

    A parent killed with SIGKILL cannot stop its workers: without this they would go on
    serving the port, beside the ones a restart starts. (Linux's PR_SET_PDEATHSIG;
    elsewhere the workers outlive a killed parent.)
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


# What a worker that asked for a reload is answered: ("reloaded", changes, summary),
# ("refused", line) or ("incomplete", line).
_Answer = tuple[Any, ...]
