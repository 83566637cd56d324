"""``serve --workers N`` binding its port: refused while anything listens there already."""

from __future__ import annotations

import errno
import socket
import threading

import pytest
import uvicorn

from app.config.schema import Config, demo_config
from app.serve import supervisor, workers


def _never(config: Config) -> uvicorn.Config:
    raise AssertionError("no worker may start")


@pytest.mark.parametrize("shared", [True, False], ids=["multi-worker", "single"])
def test_workers_refuse_a_port_another_server_listens_on(
        shared: bool, capsys: pytest.CaptureFixture[str]) -> None:
    # The other server: one whose sockets share the port (SO_REUSEPORT) or a plain one.
    other = socket.create_server(("127.0.0.1", 0), reuse_port=shared)
    with other:
        port = other.getsockname()[1]
        plan = workers.Plan(demo_config(), None, "info", _never)
        assert supervisor.serve(2, "127.0.0.1", port, plan) == 1
    assert capsys.readouterr().err.startswith(f"cannot listen on 127.0.0.1:{port}: ")


def test_a_port_that_comes_free_within_the_patience_is_taken() -> None:
    """A restart right after ``kill -9`` of a parent: its workers are still closing."""
    closing = socket.create_server(("127.0.0.1", 0))
    port = closing.getsockname()[1]
    threading.Timer(0.3, closing.close).start()
    workers.ensure_free("127.0.0.1", port, patience=10)
    with workers.listening_socket("127.0.0.1", port):
        pass


def test_a_port_still_in_use_after_the_patience_is_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as other, pytest.raises(OSError) as refused:
        workers.ensure_free("127.0.0.1", other.getsockname()[1], patience=0.2)
    assert refused.value.errno == errno.EADDRINUSE
