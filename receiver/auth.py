"""Bearer-token authentication of the LiteLLM callback.

Several tokens may be valid at once so that a token can be rotated without downtime:
add the new one, move LiteLLM to it, drop the old one.
"""

from __future__ import annotations

import hmac

TOKENS_ENV = "SPEND_WEBHOOK_TOKENS"


def parse_tokens(value: str | None) -> tuple[bytes, ...]:
    """The comma-separated tokens of ``SPEND_WEBHOOK_TOKENS``, blanks dropped."""
    return tuple(t.strip().encode() for t in (value or "").split(",") if t.strip())


def bearer_allowed(authorization: bytes | None, tokens: tuple[bytes, ...]) -> bool:
    """Whether an ``Authorization`` header value carries one of ``tokens``.

    Every token is compared, in constant time, so the answer's timing tells neither
    which token matched nor how much of one did.
    """
    if not authorization or not tokens:
        return False
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    presented = presented.strip()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token)
    return matched
