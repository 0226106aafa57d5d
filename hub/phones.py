"""Phone numbers at the edge: whatever a platform sends → E.164, or nothing.

One place for every source and sink, backed by ``phonenumbers`` (Google's libphonenumber), so
"0151 1234 5678" from a German checkout and "+49 151 12345678" from Stripe become the same
identity for caps and conversions.
"""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str | None, country: str | None = None) -> str | None:
    """``"0151 12345678"`` with country ``DE`` → ``"+4915112345678"``; ``None`` if unusable."""
    if not raw or not str(raw).strip():
        return None
    try:
        number = phonenumbers.parse(str(raw), (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
