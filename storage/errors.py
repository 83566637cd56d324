"""What a store raises to its callers, whichever database is behind it."""

from __future__ import annotations


class StoreBusy(Exception):
    """The write queue is at its bound; the caller should answer 503."""


class StoreClosed(Exception):
    """The store is shutting down and takes no more writes."""


class StoreUnavailable(Exception):
    """A write did not commit within the write timeout; it stays queued and may yet land."""


class DuplicateEvent(Exception):
    """The database already holds this fire-once event of this transaction (stored by
    another process): the duplicate rule's answer, not a failure of the store."""


class LeadExists(Exception):
    """The lead this op creates was created meanwhile by another process: nothing of the
    op was written; decide again against the stored lead."""


class ConversionConflict(Exception):
    """A conversion's status is no longer the one its change was decided from (another
    process changed it first): nothing of the op was written; decide again."""


class CapReached(Exception):
    """A conversion would take a cap past its limit: nothing of the op was written.

    ``cap`` is the key of the first cap it did not fit (see storage.records.CapCharge).
    """

    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap


class PostbackBeingSent(Exception):
    """An operator's resend found the postback leased to a delivery, delivered, or with an
    attempt recorded since it was read: nothing was written."""


class BackupInProgress(Exception):
    """Another backup of this database is being written; one runs at a time."""


class NoRoomForBackup(Exception):
    """The backup directory's filesystem has too little free space for a copy, or filled
    up while it was written; nothing of it is left."""
