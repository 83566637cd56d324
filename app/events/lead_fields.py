"""The standard fields a lead carries: set by its click, updated by its events."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Text = Annotated[str, Meta(max_length=255)]


class LeadFields(msgspec.Struct, frozen=True, kw_only=True):
    """Tracking fields a lead carries; clicks set them and events may update them."""

    sub1: Text | None = None
    sub2: Text | None = None
    sub3: Text | None = None
    sub4: Text | None = None
    sub5: Text | None = None
    adv1: Text | None = None
    adv2: Text | None = None
    adv3: Text | None = None
    adv4: Text | None = None
    adv5: Text | None = None
    utm_source: Text | None = None
    utm_medium: Text | None = None
    utm_campaign: Text | None = None
    utm_adgroup: Text | None = None
    utm_matchtype: Text | None = None
    utm_term: Text | None = None
    utm_content: Text | None = None
    utm_creative: Text | None = None
    utm_placement: Text | None = None
    external_clickid: Text | None = None
    clid: Text | None = None


# The named fields an event updates on its lead; extra fields update it too.
EVENT_LEAD_FIELDS = frozenset(LeadFields.__struct_fields__) | {
    "tcpa_consent", "tcpa_consent_date", "adSpend", "min_price",
}
