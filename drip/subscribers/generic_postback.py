"""A signed server-to-server conversion postback, for any affiliate network.

The network calls ``/postbacks/generic`` with these parameters (query string,
or form body for POST):

- ``click``: the click id our redirect appended to the affiliate URL (may be
  empty for a sale that came from elsewhere: stored unattributed);
- ``amount``: what this account earns, a decimal like ``27.50``;
- ``currency``: a three-letter code (ISO 4217);
- ``txid``: the network's transaction id; a replay of the same txid and type
  counts once, and a refund names the txid of its sale;
- ``type`` (optional): ``sale`` (default), ``refund`` or ``chargeback``;
- ``ts``: Unix time in seconds; more than five minutes away from our clock is
  refused, so a captured URL cannot be replayed later;
- ``sig``: lower-case hex HMAC-SHA256, keyed with ``DRIP_POSTBACK_SECRET``,
  over the canonical query string of every other parameter: each name and
  value percent-encoded as RFC 3986 unreserved characters (``A-Z a-z 0-9 -
  . _ ~`` kept, all else ``%XX`` from UTF-8, space as ``%20``), pairs
  ``name=value`` sorted by name, joined with ``&``.

Every parameter may appear once: a repeated one is refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from drip.data.models import ConversionType
from drip.subscribers.conversions import InvalidReport, Report, cents, currency

SOURCE = "generic"
MAX_CLOCK_SKEW = timedelta(minutes=5)
SIGNATURE = "sig"
KINDS = {
    "sale": ConversionType.SALE.value,
    "refund": ConversionType.RFND.value,
    "chargeback": ConversionType.CGBK.value,
}
KNOWN = {"click", "amount", "currency", "txid", "type", "ts", SIGNATURE}


def canonical(params: Sequence[tuple[str, str]]) -> str:
    """What is signed: every parameter but sig, RFC 3986-encoded, sorted by name."""
    pairs = sorted((name, value) for name, value in params if name != SIGNATURE)
    return "&".join(
        f"{quote(name, safe='-._~')}={quote(value, safe='-._~')}" for name, value in pairs
    )


def sign(params: Sequence[tuple[str, str]], secret: str) -> str:
    message = canonical(params).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(params: Sequence[tuple[str, str]], secret: str, *, now: datetime) -> Report:
    """The reported transaction, once the signature and the time check out."""
    values = _single_values(params)
    given = values.get(SIGNATURE, "")
    if not hmac.compare_digest(given.lower().encode(), sign(params, secret).encode()):
        raise InvalidReport(401, "bad signature: see docs/revenue.md for what is signed")
    moment = _timestamp(values.get("ts", ""))
    if abs(now - moment) > MAX_CLOCK_SKEW:
        raise InvalidReport(401, "stale timestamp: ts is more than five minutes off")
    return _report(values, moment)


def _single_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in params:
        if name in values:
            raise InvalidReport(400, f"parameter {name!r} given more than once")
        values[name] = value
    unknown = sorted(values.keys() - KNOWN)
    if unknown:
        raise InvalidReport(400, f"unknown parameters: {', '.join(unknown)}")
    missing = sorted({"amount", "currency", "txid", "ts", SIGNATURE} - values.keys())
    if missing:
        raise InvalidReport(400, f"missing parameters: {', '.join(missing)}")
    return values


def _timestamp(raw: str) -> datetime:
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidReport(400, "ts must be Unix time in whole seconds")
    return datetime.fromtimestamp(int(raw), UTC)


def _report(values: dict[str, str], moment: datetime) -> Report:
    kind = KINDS.get(values.get("type") or "sale")
    if kind is None:
        raise InvalidReport(422, f"type must be one of {', '.join(KINDS)}")
    txid = values["txid"].strip()
    if not 0 < len(txid) <= 100:
        raise InvalidReport(422, "txid must be 1 to 100 characters")
    amount = cents(values["amount"])
    if amount < 0:
        raise InvalidReport(422, "amount must not be negative: send type=refund instead")
    click = values.get("click", "").strip()
    return Report(
        source=SOURCE,
        external_id=txid,
        kind=kind,
        amount_cents=amount,
        currency=currency(values["currency"]),
        occurred_at=moment,
        tracking_codes=(click,) if click else (),
    )
