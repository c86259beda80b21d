"""Signed, opaque tokens for links in emails. They carry ids, never an address."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

# One salt per purpose, so a token made for one link never works for another.
CONFIRM = "drip.confirm"
UNSUBSCRIBE = "drip.unsubscribe"
PREFERENCES = "drip.preferences"
CLICK = "drip.click"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Tokens:
    secret_key: str
    confirm_max_age: int = 7 * 86400

    def make(self, purpose: str, *ids: int) -> str:
        if purpose == CONFIRM:
            return URLSafeTimedSerializer(self.secret_key, salt=purpose).dumps(list(ids))
        # Unsubscribe and preferences links must keep working for at least a
        # year (CAN-SPAM: 30 days after sending at the least), so they never expire.
        return URLSafeSerializer(self.secret_key, salt=purpose).dumps(list(ids))

    def read(self, purpose: str, token: str) -> list[int]:
        try:
            if purpose == CONFIRM:
                serializer = URLSafeTimedSerializer(self.secret_key, salt=purpose)
                value = serializer.loads(token, max_age=self.confirm_max_age)
            else:
                value = URLSafeSerializer(self.secret_key, salt=purpose).loads(token)
        except SignatureExpired as exc:
            raise InvalidToken("this link has expired") from exc
        except BadSignature as exc:
            raise InvalidToken("this link is not valid") from exc
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise InvalidToken("this link is not valid")
        return value
