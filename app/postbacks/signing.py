"""Request signing: HMAC-SHA256 signatures a receiver checks with the secret it shares.

Two schemes, both sent when both are configured. Standard Webhooks
(https://www.standardwebhooks.com/, ``signing_secrets``) is the one to use: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64>`` per secret, so a receiver
keeps verifying while a secret is rotated), the message ``<id>.<timestamp>.<body>``, keyed
with the bytes the ``whsec_`` secret encodes; a GET has no body and signs an empty one.

The older scheme (``secret``) is kept for the receivers that check it. Its signed message
is ``<timestamp>.<payload>``, where the payload is the request body of a POST and the full
URL, as sent, of a GET. A buyer verifies it with::

    expected = "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + payload,
                                    hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Postback-Signature"])

and should refuse timestamps far from its own clock, so a captured request cannot be
replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Postback-Timestamp"
SIGNATURE_HEADER = "X-Postback-Signature"
WEBHOOK_PREFIX = "whsec_"


def signature(secret: str, timestamp: str, payload: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signature_headers(secret: str, timestamp: int, payload: bytes) -> dict[str, str]:
    stamp = str(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, payload)}


def webhook_key(secret: str) -> bytes:
    """The key a ``whsec_`` secret encodes (base64, its padding optional, as Standard
    Webhooks libraries read it); raises ValueError for anything else."""
    if not secret.startswith(WEBHOOK_PREFIX):
        raise ValueError("no whsec_ prefix")
    encoded = secret.removeprefix(WEBHOOK_PREFIX)
    # binascii.Error is a ValueError.
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def webhook_signature(secrets: Sequence[str], message_id: str, timestamp: int,
                      payload: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, in their order."""
    signed = f"{message_id}.{timestamp}.".encode() + payload
    return " ".join(
        "v1," + base64.b64encode(
            hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets)


def webhook_headers(secrets: Sequence[str], message_id: str, timestamp: int,
                    payload: bytes) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(secrets, message_id, timestamp, payload)}


def signing_secrets_problem(secrets: list[str] | None) -> tuple[str, str] | None:
    """The first rule ``signing_secrets`` breaks, or None. The value is never shown: a
    diagnosis is logged when a reload refuses it."""
    for k, secret in enumerate(secrets or ()):
        try:
            size = len(webhook_key(secret))
        except ValueError:
            size = 0
        if not 24 <= size <= 64:
            return (f"signing_secrets[{k}]", "is not a whsec_ secret (whsec_ followed by "
                                             "base64 of 24 to 64 bytes)")
    if secrets is not None and len(secrets) > 5:
        return "signing_secrets", "at most 5 (two are enough to rotate one)"
    if secrets is not None and len(set(secrets)) != len(secrets):
        return "signing_secrets", "a secret is listed twice"
    return None
