"""``serve --workers N``: N server processes on one port, under uvicorn's supervisor.

The parent binds the port once and runs ``uvicorn.supervisors.Multiprocess``: each worker
is a fresh process (spawned, not forked) that sets up its logging, builds its own app and
store (with PostgreSQL the database, not any process, decides the rules) and accepts on
the shared socket. The supervisor's signals: TERM or INT stops every worker gracefully,
HUP restarts them one by one on the config file as it is then, TTIN and TTOU add and
remove one; a worker that dies is replaced.

``Supervisor`` adds to uvicorn's what it lacks here: the config file is read and checked
once, in the parent, before any worker restarts (a file with an error restarts nothing and
is logged with its one-line diagnosis; a replacement for a dead worker always starts on
the config in force, never on a file edited since), and ``POST /api/admin/reload`` in any
worker asks the parent for the same restart and is answered once every worker serves the
new config.
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
from multiprocessing.connection import Connection, wait
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.config.reload import (
    ConfigFile,
    Reloaded,
    ReloadIncomplete,
    changes,
    check,
    logged_changes,
    supervised_by,
)
from app.config.schema import Config, ConfigError
from app.config.summary import summary
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


def serve(count: int, host: str, port: int, plan: Plan) -> int:
    """Run ``count`` workers until SIGTERM or SIGINT: 0, or 1 when a worker could not
    start (the first ones, or a replacement)."""
    try:
        ensure_free(host, port)
        sock = listening_socket(host, port)
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {host}:{port}: {exc.strerror or exc}\n")
        return 1
    with sock:
        supervisor = Supervisor(uvicorn.Config(
            "app.factory:create_app", workers=count, log_config=None,
            timeout_worker_healthcheck=WORKER_START_SECONDS), [sock], plan)
        supervisor.run()
    return 1 if supervisor.failed else 0


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


class Supervisor(Multiprocess):
    """uvicorn's supervisor, starting ``Worker``s on the config in force (see the module
    docstring for what it adds)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket],
                 plan: Plan) -> None:
        super().__init__(config, sockets)
        self.plan = plan
        self.failed = False
        self.processes: list[Worker] = []  # type: ignore[assignment]

    def _start(self) -> Worker:
        worker = Worker(self.config, self.sockets, self.plan)
        worker.start()
        return worker

    def init_processes(self) -> None:
        self.processes = [self._start() for _ in range(self.processes_num)]

    def run(self) -> None:
        log.info("supervisor_started", workers=self.processes_num)
        self.init_processes()
        while not self.should_exit.is_set():
            # Reload requests wake the loop at once; signals within half a second.
            for conn in wait([worker.control for worker in self.processes], timeout=0.5):
                self._answer_request(conn)
                break  # the workers may have changed
            self.handle_signals()
            self.keep_subprocess_alive()
        self.terminate_all()
        self.join_all()
        for worker in self.processes:
            worker.close_control()
        log.info("supervisor_stopped")

    def _answer_request(self, conn: Any) -> None:
        requester = next((w for w in self.processes if w.control is conn), None)
        try:
            _, force = conn.recv()
        except (EOFError, OSError):  # the worker died; keep_subprocess_alive replaces it
            return
        self._reload(force=force, requester=requester)

    def handle_hup(self) -> None:
        log.info("supervisor_reload", signal="SIGHUP")
        self._reload(force=False, requester=None)

    def _reload(self, *, force: bool, requester: Worker | None) -> None:
        """Check the config file, then restart every worker on it, ``requester`` last."""
        source = self.plan.config_file
        old = self.plan.config
        try:
            if source is None:
                if requester is not None:
                    raise ConfigError("no config file was given at start-up: nothing to "
                                      "reload")
                new, forced = old, None  # SIGHUP restarts the workers on the same config
            else:
                new = source.read()
                forced = check(source.path, old, new, force=force)
        except ConfigError as exc:
            log.error("config_reload_refused", error=str(exc))
            if requester is not None:
                _send(requester.control, ("refused", str(exc)))
            return
        answer = self._restart_all_on(new, requester, ("reloaded", changes(old, new),
                                                        summary(new)))
        if answer[0] == "reloaded":
            self.plan = dataclasses.replace(self.plan, config=new)
            if source is not None:
                logged_changes(source.path, old, new, forced)
        if requester is not None and requester in self.processes:
            _send(requester.control, answer)  # it was not restarted

    def _restart_all_on(self, config: Config, requester: Worker | None,
                        answer: _Answer) -> _Answer:
        """uvicorn's ``restart_all`` on ``config``: each new worker serves before its old
        one is stopped, and an old one stays when its new one does not start. Returns
        ``answer``, or what went wrong."""
        plan = dataclasses.replace(self.plan, config=config)
        order = sorted(range(len(self.processes)),
                       key=lambda idx: self.processes[idx] is requester)
        retired: list[Worker] = []
        for done, idx in enumerate(order):
            old = self.processes[idx]
            new = Worker(self.config, self.sockets, plan)
            new.start()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck,
                                        self.should_exit):
                new.kill()
                new.join()
                new.close_control()
                line = (f"worker {new.pid} did not start (see its log lines); {done} of "
                        f"{len(order)} workers serve the new config, the others the one "
                        "before it")
                log.error("reload_incomplete", error=line, kept=old.pid)
                answer = ("incomplete", line)
                break
            # Stopped now (it stops accepting at once), joined once its requests are done.
            old.terminate()
            retired.append(old)
            self.processes[idx] = new
        for old in retired:
            # A reload asked of a worker retired meanwhile is answered by this restart.
            if old is not requester and old.control.poll():
                with contextlib.suppress(EOFError, OSError):
                    old.control.recv()
                    _send(old.control, answer)
        if requester in retired:
            assert requester is not None
            # Its answer follows the SIGTERM: it answers once it accepts no more.
            _send(requester.control, answer)
        for old in retired:
            old.join()
            old.close_control()
        return answer

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, with ``Worker``s: a worker that died is replaced on the config in
        force; one that could not even start (its database refused, say) would fail the
        same way every time, so the service stops (exit 1)."""
        if self.should_exit.is_set():
            return
        for idx, worker in enumerate(self.processes):
            if worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            worker.kill()  # hung, or gone already
            worker.join()
            worker.close_control()
            if worker.exitcode == STARTUP_FAILURE:
                log.error("worker_not_started", worker=worker.pid)
                self.failed = True
                self.should_exit.set()
                return
            log.warning("worker_died", worker=worker.pid, exitcode=worker.exitcode)
            self.processes[idx] = self._start()

    def handle_ttin(self) -> None:
        self.processes_num += 1
        self.processes.append(self._start())
        log.info("worker_added", workers=self.processes_num)

    def handle_ttou(self) -> None:
        if self.processes_num <= 1:
            log.warning("worker_not_removed", workers=self.processes_num,
                        reason="one worker is the least")
            return
        self.processes_num -= 1
        worker = self.processes.pop()
        worker.terminate()
        worker.join()
        worker.close_control()
        log.info("worker_removed", workers=self.processes_num)


def _send(conn: Connection, answer: _Answer) -> None:
    with contextlib.suppress(OSError):  # the worker is gone: nobody waits for it
        conn.send(answer)
