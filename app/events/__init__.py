"""Event intake: the click and event payloads, the checks against the catalog, the
standard lead fields, and Idempotency-Key answers."""
