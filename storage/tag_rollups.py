"""Roll-ups by a lead's tracking field: the hourly figures, also per field and value.

For each field the config names in ``[reports] breakdowns`` (and the store lists as kept),
``tag_stats`` holds storage/rollups.py's figures keyed by (field, value, hour, cid, pid,
event id), the value being the one stored on the figure's lead (``''`` without one): the
click, its events, conversions and reversals all count under their lead's value, as the
exact report reads them. Each store's writer keeps them in the batch's transaction:

* what the batch adds or changes is counted per lead (``rollups.new_rows(per_lead=True)``
  and the like) and lands under the lead's value as stored before the batch's field
  changes (``attributed``);
* a lead whose tracked value the batch changes then has everything it ever counted, as
  the rows hold it at the end of the batch, moved from its old value to its new one
  (``moved``).

A field newly kept is counted from the rows once, in one transaction that also lists it;
one no longer kept has its rows dropped. Reports read a field's roll-ups only while it is
listed, in the same snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from storage.reports import TagKey
from storage.rollups import FIGURES, Deltas

# field, value, UTC hour, cid, pid, event id
TagKeyRow = tuple[str, str, str, str, str, str]
TagDeltas = dict[TagKeyRow, list[int]]
# Each lead's values of the kept fields, in their order.
Values = Mapping[str, Sequence[str]]


def attributed(out: TagDeltas, per_lead: Deltas, fields: Sequence[TagKey], values: Values,
               sign: int = 1) -> None:
    """Add ``sign`` times each lead's deltas under its value of every field in ``fields``.

    A lead missing from ``values`` (an event whose lead is not stored) counts under
    ``''``, as the exact report's lookup of its lead finds none.
    """
    none = ("",) * len(fields)
    for (hour, cid, pid, event_id, lead), figures in per_lead.items():
        for field, value in zip(fields, values.get(lead, none), strict=True):
            key = (field, value, hour, cid, pid, event_id)
            row = out.get(key)
            if row is None:
                row = out[key] = [0] * len(FIGURES)
            for at, amount in enumerate(figures):
                row[at] += sign * amount


def changed(leads: Iterable[str], before: Values, after: Values) -> list[str]:
    """The leads whose value of some kept field differs after the batch, in key order."""
    return sorted({lead for lead in leads
                   if lead in before and lead in after and before[lead] != after[lead]})


def moved(out: TagDeltas, counted: Deltas, fields: Sequence[TagKey], before: Values,
          after: Values) -> None:
    """Move what each lead counted (``counted``, per lead) from its old values to its new."""
    attributed(out, counted, fields, before, -1)
    attributed(out, counted, fields, after, 1)


def nonzero(deltas: TagDeltas) -> list[tuple[TagKeyRow, list[int]]]:
    """The deltas that change something, in key order (the order rows are locked in)."""
    return [(key, deltas[key]) for key in sorted(deltas) if any(deltas[key])]
