"""Every error the API answers with, and the exception that carries one to the envelope."""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than success; ``outcome`` is the short name used in the request log."""

    def __init__(
        self,
        status: int,
        message: str,
        outcome: str,
        *,
        missing: list[str] | None = None,
        invalid: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        coded: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome
        self.missing = missing
        self.invalid = invalid
        self.headers = headers
        # The envelope's "code": only answers the seed API does not have carry one, so
        # every answer it does have stays as it was.
        self.code = outcome if coded else None


def invalid_json() -> ApiError:
    return ApiError(400, "Invalid JSON body", "invalid_json")


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body too large (limit {limit} bytes)", "body_too_large")


def body_timeout() -> ApiError:
    # The connection is closed: what is left of the body would be read as a next request.
    return ApiError(408, "Request body timeout", "body_timeout",
                    headers={"Connection": "close"})


def required(missing: list[str]) -> ApiError:
    return ApiError(400, f"{missing[0]} is required", "missing_field", missing=missing)


def invalid_fields(invalid: dict[str, str]) -> ApiError:
    first = next(iter(invalid))
    return ApiError(400, f"Invalid {first}", "invalid_field", invalid=invalid)


def invalid_from(exc: Exception, whole: str) -> ApiError:
    """msgspec's 'Expected ... - at `$.reason`' as 400 Invalid reason, naming the field;
    an error not at any field is put on ``whole`` (the body, the query)."""
    text = str(exc)
    problem, _, where = text.rpartition(" - at `$.")
    field = where.rstrip("`").split("[", 1)[0].split(".", 1)[0] if problem else whole
    return invalid_fields({field: problem or text})


def cid_mismatch() -> ApiError:
    return ApiError(400, "cid does not match the URL", "cid_mismatch")


def cid_not_owner() -> ApiError:
    return ApiError(400, "cid does not match the transaction", "cid_mismatch")


def invalid_cid() -> ApiError:
    return ApiError(400, "Invalid cid", "invalid_cid")


def origin_not_allowed() -> ApiError:
    return ApiError(403, "Origin not allowed for this campaign", "origin_not_allowed")


def invalid_token() -> ApiError:
    return ApiError(401, "Invalid token", "invalid_token", coded=True,
                    headers={"WWW-Authenticate": "Bearer"})


def ip_not_allowed() -> ApiError:
    return ApiError(403, "IP not allowed", "ip_not_allowed", coded=True)


def invalid_event_id() -> ApiError:
    return ApiError(400, "Invalid event_id for this campaign", "invalid_event_id")


def invalid_pid() -> ApiError:
    return ApiError(400, "Invalid pid", "invalid_pid")


def source_inactive() -> ApiError:
    return ApiError(403, "Source Inactive", "source_inactive")


def invalid_transaction() -> ApiError:
    return ApiError(400, "Invalid transaction_id for this campaign", "invalid_transaction_id")


def malformed_transaction() -> ApiError:
    return ApiError(400, "Invalid transaction_id", "invalid_transaction_id")


def cap_reached() -> ApiError:
    """A cap with ``over = "reject"`` is full for this period: nothing was stored."""
    return ApiError(400, "Cap reached", "cap_reached", coded=True)


def cap_reached_on_approval() -> ApiError:
    """Approving a conversion held by a cap would take that cap past its limit."""
    return ApiError(409, "Cap reached", "cap_reached", coded=True)


def revenue_required() -> ApiError:
    return ApiError(400, "revenue is required for conversion events", "revenue_required")


def locked() -> ApiError:
    return ApiError(403, "Concurrent event in progress", "locked")


def duplicate() -> ApiError:
    return ApiError(400, "Duplicate event for this transaction_id", "duplicate")


def invalid_idempotency_key() -> ApiError:
    return ApiError(400, "Invalid Idempotency-Key (1-255 printable ASCII characters)",
                    "invalid_idempotency_key")


def idempotency_key_reused() -> ApiError:
    return ApiError(422, "Idempotency-Key reused with different fields", "idempotency_mismatch")


def idempotency_key_in_progress() -> ApiError:
    return ApiError(409, "A request with this Idempotency-Key is in progress",
                    "idempotency_in_progress")


def busy() -> ApiError:
    return ApiError(503, "Server busy", "busy", headers={"Retry-After": "1"})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "unauthorized",
                    headers={"WWW-Authenticate": "Bearer"})


def forbidden() -> ApiError:
    """A known token whose role does not reach the route."""
    return ApiError(403, "Forbidden", "forbidden", coded=True)


def transaction_not_found() -> ApiError:
    return ApiError(404, "Transaction not found", "not_found")


def postback_not_found() -> ApiError:
    return ApiError(404, "Postback not found", "not_found")


def endpoint_not_found() -> ApiError:
    return ApiError(404, "Endpoint not found", "not_found")


def conversion_not_found() -> ApiError:
    return ApiError(404, "Conversion not found", "not_found")


def conversion_already(status: str) -> ApiError:
    return ApiError(409, f"Conversion already {status}", "conversion_already")


def postback_delivered() -> ApiError:
    return ApiError(409, "Postback already delivered", "already_delivered")


def postback_being_delivered() -> ApiError:
    return ApiError(409, "Postback being delivered", "being_delivered")


def backup_in_progress() -> ApiError:
    return ApiError(409, "Backup in progress", "backup_in_progress")


def insufficient_storage() -> ApiError:
    """The backup directory's disk has no room for a copy: less free space than twice the
    database, or it filled up during the copy."""
    return ApiError(507, "Insufficient storage", "insufficient_storage")


def catalog_in_file() -> ApiError:
    """A change to the catalog while [server] catalog = "file"."""
    return ApiError(409, "Catalog is managed by the config file", "catalog_in_file", coded=True)


def catalog_refused(diagnosis: str) -> ApiError:
    """A catalog change that breaks a rule of the config: check-config's one line."""
    return ApiError(400, diagnosis, "catalog_refused", coded=True)


def catalog_not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found", "not_found")


def catalog_if_match_required() -> ApiError:
    return ApiError(428, "If-Match required: the ETag of the catalog version the change is "
                         "made on", "if_match_required", coded=True)


def catalog_changed() -> ApiError:
    """If-Match names a catalog version that is no longer the newest."""
    return ApiError(412, "Catalog changed since that version: read it again",
                    "catalog_changed", coded=True)


def store_not_writable() -> ApiError:
    return ApiError(503, "Store not writable", "store_not_writable",
                    headers={"Retry-After": "1"})


def store_unavailable() -> ApiError:
    """A write (or a read that must follow one) did not finish within the write timeout."""
    return ApiError(503, "Store unavailable", "store_unavailable",
                    headers={"Retry-After": "5"})


INTERNAL_ERROR = "Internal server error"
