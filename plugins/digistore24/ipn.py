"""The IPN wire format: a url-encoded form signed with ``sha_sign`` (Digistore24's IPN docs).

Digistore24 signs with a plain SHA-512 over ``key=value<passphrase>`` for every non-empty field,
keys sorted, upper-case hex. Digistore24's own PHP ``digistore_signature()`` is the reference;
Digistore24's published known-answer vector is checked by the tests. Everything here works on the
raw body, before anything else reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode

SIGNATURE_FIELDS = frozenset({"sha_sign", "SHASIGN"})
# Digistore24 sends ~100 fields plus the seller's own "additional fields"; a form with more is
# not an IPN, and parse_qsl has no cap of its own (Flask caps no form's field count either)
MAX_FIELDS = 1000


class FormError(ValueError):
    """The body is not a well-formed, UTF-8, url-encoded form without duplicate keys."""


def read_form(body: bytes, max_fields: int = MAX_FIELDS) -> dict[str, str]:
    """Decode an IPN body into ``{field: value}`` exactly as PHP's ``$_POST`` would see it.

    Digistore24 posts UTF-8 only. A repeated key is refused: PHP keeps the last value while the
    signature was computed by the sender over what *it* meant, so the two can disagree.
    """
    if b"\x00" in body:  # no form has one; PostgreSQL could not store the raw body
        raise FormError("the body contains a NUL byte")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except UnicodeDecodeError:
        raise FormError("the body is not UTF-8") from None
    except ValueError:  # "Max number of fields exceeded"
        raise FormError(f"more than {max_fields} form fields") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise FormError(f"form field {key!r} appears more than once")
        form[key] = value
    return form


def signing_string(
    fields: Mapping[str, str | None] | Iterable[tuple[str, str]], passphrase: str
) -> str:
    """The text Digistore24 hashes: ``key=value<passphrase>`` per signed field, keys sorted.

    Skipped: ``sha_sign``/``SHASIGN`` themselves and empty values (PHP's ``""``, ``null`` and
    ``false``; ``"0"`` is *not* skipped). Keys sort as byte strings like PHP's ``SORT_STRING``;
    for UTF-8 text Python's code-point order is the same order.
    """
    items = dict(fields)
    parts = []
    for key in sorted(k for k in items if k not in SIGNATURE_FIELDS):
        value = items[key]
        if value is None or value is False or value == "":
            continue
        parts.append(f"{key}={value}{passphrase}")
    return "".join(parts)


def sign(fields: Mapping[str, str | None] | Iterable[tuple[str, str]], passphrase: str) -> str:
    """The ``sha_sign`` Digistore24 sends for these fields: SHA-512, upper-case hex."""
    text = signing_string(fields, passphrase)
    return hashlib.sha512(text.encode("utf-8")).hexdigest().upper()


def signature_matches(form: Mapping[str, str], passphrase: str) -> bool:
    """True when the form's ``sha_sign`` (or ``SHASIGN``) is the one the passphrase gives.

    Compared in constant time over bytes (``compare_digest`` refuses non-ASCII ``str``).
    """
    received = form.get("sha_sign") or form.get("SHASIGN") or ""
    if not received or not passphrase:
        return False
    expected = sign(form, passphrase)
    return hmac.compare_digest(expected.encode("ascii"), received.encode("utf-8"))


def fingerprint(form: Mapping[str, str]) -> str:
    """A stable hash of the signed fields, for callbacks that carry no id of their own.

    The passphrase is left out so that rotating it does not make a retry look new.
    """
    signed = sorted((k, v) for k, v in form.items() if k not in SIGNATURE_FIELDS and v != "")
    return hashlib.sha256(json.dumps(signed, ensure_ascii=False).encode("utf-8")).hexdigest()[:40]


def signed_body(fields: Mapping[str, str], passphrase: str) -> bytes:
    """A url-encoded body with ``sha_sign`` appended, as Digistore24 would post it."""
    return urlencode({**fields, "sha_sign": sign(fields, passphrase)}).encode("ascii")
