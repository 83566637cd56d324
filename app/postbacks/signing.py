"""Request signing: an HMAC-SHA256 a buyer can check with the shared secret.

The signed message is ``<timestamp>.<payload>``, where the payload is the request body of a
POST and the full URL, as sent, of a GET. A buyer verifies it with::

    expected = "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + payload,
                                    hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Postback-Signature"])

and should refuse timestamps far from its own clock, so a captured request cannot be
replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Postback-Timestamp"
SIGNATURE_HEADER = "X-Postback-Signature"


def signature(secret: str, timestamp: str, payload: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signature_headers(secret: str, timestamp: int, payload: bytes) -> dict[str, str]:
    stamp = str(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, payload)}
