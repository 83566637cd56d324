"""At most ``[server] max_concurrent_reports`` reports at once; past it, 503 at once.

A report over a month of rows holds a thread, a connection's memory and, for its Python
part, the interpreter: twenty of them at once stalled every event for hundreds of
milliseconds and grew the process by hundreds of megabytes. Refusing the surplus with
``Retry-After`` keeps the event path's latency and the memory bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.edge import errors


class ReportGate:
    """Counts the reports running; one per app, shared by every request."""

    def __init__(self) -> None:
        self.running = 0

    @contextmanager
    def admit(self, limit: int) -> Iterator[None]:
        """Hold a place while the report runs; 503 ``Server busy`` when ``limit`` are."""
        if self.running >= limit:
            raise errors.busy()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
