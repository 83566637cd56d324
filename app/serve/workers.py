"""``serve --workers N``: N server processes accepting on one port.

The parent binds the port once per worker (SO_REUSEPORT: the kernel spreads new
connections evenly over the sockets, where one shared socket lets whichever process wakes
first take most of them), forks the workers (each builds its own app and store: with
PostgreSQL the database, not any process, decides the rules), passes SIGTERM and SIGINT on
to them (as SIGTERM) and exits once they all have: 0 when every one stopped cleanly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# In a worker: stop requests that came before the server was there to take them.
_stop_requested = False
_on_stop: Callable[[], None] | None = None


def on_stop(callback: Callable[[], None]) -> None:
    """In a worker: ``callback`` now stands for every SIGTERM or SIGINT not yet handled by
    the server itself, including one that came before this call."""
    global _on_stop
    _on_stop = callback
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stop)
    if _stop_requested:
        callback()


def _stop(signum: int, _frame: object) -> None:
    global _stop_requested
    _stop_requested = True
    if _on_stop is not None:
        _on_stop()


# How long a port in use may take to come free before the server gives up on it.
PORT_PATIENCE_SECONDS = 2.0


def _socket(host: str, *, shared: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def ensure_free(host: str, port: int, *, patience: float = PORT_PATIENCE_SECONDS) -> None:
    """Raise OSError if anything listens on the port, for longer than ``patience``.

    SO_REUSEPORT lets any process of the same user bind a port that is in use with it:
    another multi-worker server left running (an old deployment) would silently share
    the traffic with this one. A socket without it is refused, as a single server is.
    The patience covers a restart right after ``kill -9`` of a parent, whose workers are
    still closing their sockets for a fraction of a second.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            with _socket(host, shared=False) as probe:
                probe.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def listening_socket(host: str, port: int) -> socket.socket:
    sock = _socket(host, shared=True)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _stop_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when ``parent`` dies, however it dies.

    A parent killed with SIGKILL cannot pass anything on: without this its workers would
    go on serving the port, beside the ones a restart starts. (Linux's PR_SET_PDEATHSIG;
    elsewhere the workers outlive a killed parent.)
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve(count: int, host: str, port: int, run: Callable[[socket.socket], int]) -> int:
    sockets: list[socket.socket] = []
    try:
        ensure_free(host, port)
        for _ in range(count):
            sockets.append(listening_socket(host, port))
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {host}:{port}: {exc.strerror or exc}\n")
        return 1
    children: list[int] = []
    parent = os.getpid()
    for sock in sockets:
        pid = os.fork()
        if pid == 0:  # a worker: serve, then leave without running the parent's cleanup
            for stop in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stop, _stop)
            _stop_with(parent)
            # Only its own socket: one held by a worker that never accepts on it would
            # strand the connections the kernel hands to it once its worker is gone.
            for other in sockets:
                if other is not sock:
                    other.close()
            code = 1
            try:
                code = run(sock)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    for sock in sockets:
        sock.close()

    def forward(signum: int, _frame: object) -> None:
        # Always as SIGTERM: a Ctrl-C reaches the workers too, and uvicorn takes a second
        # SIGINT (not a SIGTERM after it) as "stop without waiting".
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, forward)
    failed = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0
