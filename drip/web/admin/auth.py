"""Operator sign-in: one password, hashed in memory, compared in constant time.

The password (DRIP_ADMIN_PASSWORD) is hashed once when the app starts, or
given already hashed; the plain text is never compared. A sign-in lasts
SESSION_SECONDS in the signed session cookie (HttpOnly, SameSite, Secure
under https: drip/app.py). Failed attempts are counted per client address
(drip/web/admin/attempts.py); past the limit the answer is 429.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, current_app, session
from werkzeug.security import check_password_hash, generate_password_hash

from drip.config import Settings

SESSION_KEY = "admin_signed_in_at"
SESSION_SECONDS = 12 * 3600
HASH_PREFIXES = ("scrypt:", "pbkdf2:")
NOT_CONFIGURED = (
    "Sign-in is off because no admin password is set: set DRIP_ADMIN_PASSWORD "
    "(or DRIP_ADMIN_PASSWORD_FILE) and restart drip."
)


@dataclass(frozen=True)
class AdminPassword:
    hashed: str | None  # None: no password configured, every sign-in is refused

    @property
    def configured(self) -> bool:
        return self.hashed is not None

    def matches(self, given: str) -> bool:
        # check_password_hash compares digests with hmac.compare_digest (constant time).
        return self.hashed is not None and check_password_hash(self.hashed, given)


def hash_configured_password(settings: Settings) -> AdminPassword:
    configured = settings.admin_password
    if not configured:
        return AdminPassword(None)
    if configured.startswith(HASH_PREFIXES):
        return AdminPassword(configured)
    return AdminPassword(generate_password_hash(configured))


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["drip_admin_password"] = hash_configured_password(settings)


def admin_password() -> AdminPassword:
    password: AdminPassword = current_app.extensions["drip_admin_password"]
    return password


def sign_in() -> None:
    # A fresh session: nothing from before the sign-in carries over into it.
    session.clear()
    session[SESSION_KEY] = time.time()


def sign_out() -> None:
    session.clear()


def signed_in() -> bool:
    since = session.get(SESSION_KEY)
    if not isinstance(since, int | float):
        return False
    return 0 <= time.time() - since < SESSION_SECONDS
