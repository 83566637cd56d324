"""Which status changes are allowed: plain data and a function, no I/O."""

from __future__ import annotations

from typing import Literal

from storage.records import ConversionStatus

Action = Literal["approve", "reject", "reverse"]

# pending -> approved | rejected; approved -> reversed. Nothing else, ever.
_MOVES: dict[tuple[ConversionStatus, Action], ConversionStatus] = {
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("approved", "reverse"): "reversed",
}


def next_status(current: ConversionStatus, action: Action) -> ConversionStatus | None:
    """The status ``action`` moves a conversion in ``current`` to; None when not allowed.

    The same change asked twice is not allowed either, so a retried call is refused and
    says what happened ("Conversion already approved").
    """
    return _MOVES.get((current, action))
