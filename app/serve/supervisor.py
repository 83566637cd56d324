"""The supervisor of ``serve --workers N``: uvicorn's, with the config read once, here.

``Supervisor`` adds to ``uvicorn.supervisors.Multiprocess`` what it lacks here (see
app/serve/workers.py for the workers it starts): the config file is read and checked once,
in the parent, before any worker restarts (a file with an error restarts nothing and is
logged with its one-line diagnosis; a replacement for a dead worker always starts on the
config in force, never on a file edited since), and ``POST /api/admin/reload`` in any
worker asks the parent for the same restart and is answered once every worker serves the
new config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
from multiprocessing.connection import Connection, wait
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from app.config.reload import (
    changes,
    check,
    logged_changes,
)
from app.config.schema import Config, ConfigError
from app.config.summary import summary
from app.serve.workers import (
    WORKER_START_SECONDS,
    Plan,
    Worker,
    _Answer,
    ensure_free,
    listening_socket,
)

log = structlog.get_logger("app.workers")


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
