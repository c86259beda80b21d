"""Settings: the only module that reads the environment.

Every variable is read and checked once, at start; a bad value fails with a
message naming the variable. Secrets may come from ``NAME_FILE``.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_VAR_DIR = Path("var")
# Where Redis is looked for when DRIP_REDIS_URL is unset outside `drip run`.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_VAR_DIR}/drip.sqlite3"
    redis_url: str | None = None
    base_url: str = "http://127.0.0.1:5000"
    secret_key: str = ""
    # True when the key was generated into var/ because DRIP_SECRET_KEY is unset (development).
    secret_key_generated: bool = False
    email_backend: str = "outbox"
    outbox_dir: Path = DEFAULT_VAR_DIR / "outbox"
    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_key: str | None = None
    sendgrid_timeout: float = 10.0
    send_rate: float = 0.0  # emails per second across all workers; 0 means unlimited
    course_dir: Path = Path("course")
    affiliate_url: str | None = None
    # The operator's identity, replacing the course file's (see course_overrides).
    sender_name: str | None = None
    sender_email: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    operator_name: str | None = None  # who runs the course, for the privacy notice
    # The affiliate URL parameter that carries our opaque click id (ClickBank: tid).
    affiliate_click_param: str = "tid"
    clickbank_secret_key: str | None = None  # decrypts ClickBank's Instant Notifications
    postback_secret: str | None = None  # signs generic server-to-server postbacks
    day_seconds: int = 86400
    tick_seconds: float = 60.0
    admin_password: str | None = None
    metrics_token: str | None = None
    log_json: bool = False
    var_dir: Path = DEFAULT_VAR_DIR
    batch_size: int = 1000  # SendGrid takes at most 1000 personalizations per request
    # How long a claimed delivery may stay "sending" before it is reclaimed, and how
    # long handed-out work may wait for its task before it is handed out again. The
    # sending worker renews it while it legitimately waits (drip/sending/lease.py), so
    # it only needs to outlast a missed renewal: a dead worker's batch goes again soon.
    lease_seconds: int = 20
    # Abuse limits (drip/limits.py): signups per IP, confirmation emails per address a day.
    signup_rate_limit: str = "10 per minute;100 per hour"
    confirmations_per_address_per_day: int = 3
    rate_limits_enabled: bool = True
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For we believe
    # Tests give each run its own queue, so two runs on one Redis never take each other's work.
    task_queue: str = "drip"
    confirm_max_age_seconds: int = 7 * 86400
    pending_expiry_seconds: int = 7 * 86400
    # Health thresholds (drip/health.py), each (amber, red): a value at or above turns it so.
    health_backlog_age: tuple[float, float] = (300.0, 900.0)  # oldest due-but-unsent, seconds
    health_tick_age: tuple[float, float] = (180.0, 600.0)  # since the last scheduler tick
    health_queue_depth: tuple[float, float] = (100.0, 1000.0)  # send tasks waiting in Redis
    health_failures: tuple[float, float] = (5.0, 50.0)  # failed sends in the last hour
    health_inspect_timeout: float = 1.0  # how long to wait for workers to answer a ping
    # Outgoing webhooks may reach private, loopback and link-local addresses (development only).
    webhooks_allow_private: bool = False

    @property
    def broker_url(self) -> str:
        """The Redis that Celery, the rate limits and the send rate share."""
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def course_overrides(self) -> dict[str, str]:
        """The course fields the operator set in the environment, by Course field name."""
        fields = {
            "sender_name": self.sender_name,
            "sender_email": self.sender_email,
            "reply_to": self.reply_to,
            "postal_address": self.postal_address,
        }
        return {name: value for name, value in fields.items() if value}

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _read(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, or the contents of the file named by NAME_FILE."""
    value = env.get(name)
    if value not in (None, ""):
        return value
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from exc
    return None


def _positive_number(env: Mapping[str, str], name: str, default: float, kind: type) -> Any:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0, got {raw!r}")
    return value


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = _read(env, name) or default
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(f"{name}: expected a {'/'.join(schemes)} URL, got {raw!r}")
    return raw.rstrip("/")


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _read(env, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}: expected a whole number (0 or more), got {raw!r}")
    return int(raw)


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    from limits import parse_many

    raw = _read(env, name) or default
    try:
        parse_many(raw)
    except ValueError:
        message = f"{name}: expected limits like '10 per minute;100 per hour', got {raw!r}"
        raise ConfigError(message) from None
    return raw


def _thresholds(
    env: Mapping[str, str], name: str, default: tuple[float, float]
) -> tuple[float, float]:
    """An "AMBER,RED" pair of numbers, 0 <= amber <= red."""
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        amber, red = (float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name}: expected AMBER,RED like '300,900', got {raw!r}") from None
    if not 0 <= amber <= red:
        raise ConfigError(f"{name}: expected 0 <= AMBER <= RED, got {raw!r}")
    return amber, red


def _task_queue(env: Mapping[str, str]) -> str:
    raw = _read(env, "DRIP_TASK_QUEUE") or "drip"
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", raw):
        raise ConfigError(f"DRIP_TASK_QUEUE: use letters, digits and _.:- only, got {raw!r}")
    return raw


def _click_param(env: Mapping[str, str]) -> str:
    raw = _read(env, "DRIP_AFFILIATE_CLICK_PARAM") or "tid"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", raw):
        raise ConfigError(
            f"DRIP_AFFILIATE_CLICK_PARAM: use a URL parameter name (letters, digits, _.-), "
            f"got {raw!r}"
        )
    return raw


def _postback_secret(env: Mapping[str, str]) -> str | None:
    secret = _read(env, "DRIP_POSTBACK_SECRET")
    if secret is not None and len(secret) < 16:
        raise ConfigError("DRIP_POSTBACK_SECRET: use at least 16 random characters")
    return secret


def _batch_size(send_rate: float, lease_seconds: int) -> int:
    """SendGrid's 1000, or with a send rate at most half a lease of sending: the
    lease is renewed while a batch waits for its tokens (drip/sending/rate.py), and
    half a lease leaves room for a renewal that a busy database delayed."""
    if not send_rate:
        return 1000
    return max(1, min(1000, int(send_rate * lease_seconds / 2)))


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_read(env, name) or "false").strip().lower()
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _secret_key(env: Mapping[str, str], var_dir: Path) -> tuple[str, bool]:
    """DRIP_SECRET_KEY, or in development a key generated once into var/; and whether generated."""
    configured = _read(env, "DRIP_SECRET_KEY")
    if configured:
        if len(configured) < 16:
            raise ConfigError("DRIP_SECRET_KEY: use at least 16 random characters")
        return configured, False
    key_file = var_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip(), True
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key, True


# The same shape the course file's sender.email must have (drip/course/loader.py).
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _identity(env: Mapping[str, str]) -> dict[str, Any]:
    """Sender, reply-to, postal address and operator name; each goes into mail headers or
    every footer, so a line break is refused (it would start a new header)."""
    values: dict[str, Any] = {
        "sender_name": _read(env, "DRIP_SENDER_NAME"),
        "sender_email": _read(env, "DRIP_SENDER_EMAIL"),
        "reply_to": _read(env, "DRIP_REPLY_TO"),
        "postal_address": _read(env, "DRIP_POSTAL_ADDRESS"),
        "operator_name": _read(env, "DRIP_OPERATOR_NAME"),
    }
    for field, value in values.items():
        name = f"DRIP_{field.upper()}"
        if value is None:
            continue
        if "\n" in value or "\r" in value or not value.strip():
            raise ConfigError(f"{name}: expected one line of text, got {value!r}")
        if field in ("sender_email", "reply_to") and not _EMAIL.match(value):
            raise ConfigError(f"{name}: expected an email address, got {value!r}")
        values[field] = value.strip()
    return values


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    var_dir = Path(_read(env, "DRIP_VAR_DIR") or DEFAULT_VAR_DIR)
    database_url = _read(env, "DRIP_DATABASE_URL") or f"sqlite:///{var_dir}/drip.sqlite3"
    if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError(
            f"DRIP_DATABASE_URL: expected sqlite:///PATH or postgresql://..., got {database_url!r}"
        )
    redis_url = _read(env, "DRIP_REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"DRIP_REDIS_URL: expected redis://HOST:PORT/DB, got {redis_url!r}")
    api_key = _read(env, "SENDGRID_API_KEY")
    backend = _read(env, "DRIP_EMAIL_BACKEND") or ("sendgrid" if api_key else "outbox")
    if backend not in ("outbox", "sendgrid"):
        raise ConfigError(f"DRIP_EMAIL_BACKEND: expected outbox or sendgrid, got {backend!r}")
    if backend == "sendgrid" and not api_key:
        raise ConfigError("SENDGRID_API_KEY: required when DRIP_EMAIL_BACKEND=sendgrid")
    affiliate_url = _read(env, "DRIP_AFFILIATE_URL")
    if affiliate_url is not None:
        affiliate_url = _url(env, "DRIP_AFFILIATE_URL", "", ("https",))
    secret_key, secret_key_generated = _secret_key(env, var_dir)
    send_rate = _read(env, "DRIP_SEND_RATE")
    rate = _positive_number(env, "DRIP_SEND_RATE", 0.0, float) if send_rate else 0.0
    lease_seconds = _positive_number(env, "DRIP_SEND_LEASE_SECONDS", 20, int)
    if lease_seconds < 5:
        raise ConfigError(f"DRIP_SEND_LEASE_SECONDS: at least 5 seconds, got {lease_seconds}")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        base_url=_url(env, "DRIP_BASE_URL", "http://127.0.0.1:5000", ("http", "https")),
        secret_key=secret_key,
        secret_key_generated=secret_key_generated,
        email_backend=backend,
        outbox_dir=Path(_read(env, "DRIP_OUTBOX_DIR") or var_dir / "outbox"),
        sendgrid_api_key=api_key,
        sendgrid_host=_url(
            env, "DRIP_SENDGRID_HOST", "https://api.sendgrid.com", ("http", "https")
        ),
        sendgrid_webhook_key=_read(env, "DRIP_SENDGRID_WEBHOOK_KEY"),
        sendgrid_timeout=_positive_number(env, "DRIP_SENDGRID_TIMEOUT", 10.0, float),
        send_rate=rate,
        batch_size=_batch_size(rate, lease_seconds),
        lease_seconds=lease_seconds,
        course_dir=Path(_read(env, "DRIP_COURSE_DIR") or "course"),
        affiliate_url=affiliate_url,
        **_identity(env),
        affiliate_click_param=_click_param(env),
        clickbank_secret_key=_read(env, "DRIP_CLICKBANK_SECRET_KEY"),
        postback_secret=_postback_secret(env),
        day_seconds=_positive_number(env, "DRIP_DAY_SECONDS", 86400, int),
        tick_seconds=_positive_number(env, "DRIP_TICK_SECONDS", 60.0, float),
        admin_password=_read(env, "DRIP_ADMIN_PASSWORD"),
        metrics_token=_read(env, "DRIP_METRICS_TOKEN"),
        trusted_proxies=_whole_number(env, "DRIP_TRUSTED_PROXIES", 0),
        signup_rate_limit=_rate_limit(env, "DRIP_SIGNUP_RATE_LIMIT", "10 per minute;100 per hour"),
        confirmations_per_address_per_day=_positive_number(
            env, "DRIP_CONFIRMATIONS_PER_ADDRESS", 3, int
        ),
        log_json=(_read(env, "DRIP_LOG_JSON") or "0") in ("1", "true", "yes"),
        var_dir=var_dir,
        task_queue=_task_queue(env),
        webhooks_allow_private=_flag(env, "DRIP_WEBHOOKS_ALLOW_PRIVATE"),
        **_health_settings(env, tick_seconds=_positive_number(env, "DRIP_TICK_SECONDS", 60, float)),
    )


def _health_settings(env: Mapping[str, str], tick_seconds: float) -> dict[str, Any]:
    # A slow tick is no alarm when the tick is meant to be slow: scale with DRIP_TICK_SECONDS.
    tick_default = (max(180.0, 3 * tick_seconds), max(600.0, 10 * tick_seconds))
    return {
        "health_backlog_age": _thresholds(env, "DRIP_HEALTH_BACKLOG_AGE", (300.0, 900.0)),
        "health_tick_age": _thresholds(env, "DRIP_HEALTH_TICK_AGE", tick_default),
        "health_queue_depth": _thresholds(env, "DRIP_HEALTH_QUEUE_DEPTH", (100.0, 1000.0)),
        "health_failures": _thresholds(env, "DRIP_HEALTH_FAILURES", (5.0, 50.0)),
        "health_inspect_timeout": _positive_number(env, "DRIP_HEALTH_INSPECT_TIMEOUT", 1.0, float),
    }
