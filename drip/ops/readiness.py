"""Is this configuration ready to send real mail? Pure rules over the settings and the course.

The shipped course carries placeholders (an example.com sender, an "Example
Street" postal address, the product's homepage instead of an affiliate link).
They are fine for development and fatal in production: a From on a reserved
domain fails DMARC, CAN-SPAM wants a real postal address, and the disclosure
would promise a commission nobody earns. `drip check` prints these problems;
the web app, the workers and `drip run` refuse to start on an error when the
mail really goes out (see ``sends_real_mail``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from drip.config import ConfigError, Settings
from drip.course.model import Course

ERROR = "error"
WARNING = "warning"
MIN_SECRET_KEY_CHARS = 32
# The postal address of the course shipped in course/ (a placeholder).
SHIPPED_POSTAL_ADDRESS = "Drip Courses, 100 Example Street, Suite 1, Springfield, IL 62701, USA"
# RFC 2606 and RFC 6761: names reserved for documentation and testing, never deliverable.
RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost"})
RESERVED_DOMAINS = frozenset({"example.com", "example.org", "example.net"})
# Keys that say they are not secret (the words people paste from an example).
_PLACEHOLDER_KEY_WORDS = ("changeme", "change-me", "change_me", "example", "placeholder")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    level: str  # ERROR or WARNING
    variable: str  # what to set
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.variable}: {self.message}"


class NotReady(ConfigError):
    """Real mail would go out with placeholders or without a safeguard."""

    def __init__(self, problems: list[Problem]) -> None:
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(
            "not ready to send real mail; set these (run `drip check` to see them again):\n" + lines
        )
        self.problems = problems


def check(settings: Settings, course: Course) -> list[Problem]:
    """Every readiness problem, errors first."""
    problems = [
        *_sender_problems(course),
        *_postal_address_problems(course),
        *_base_url_problems(settings),
        *_affiliate_problems(settings),
        *_secret_key_problems(settings),
        *_webhook_problems(settings),
        *_operator_access_warnings(settings),
    ]
    return sorted(problems, key=lambda problem: problem.level != ERROR)


def sends_real_mail(settings: Settings) -> bool:
    """The SendGrid backend aimed at SendGrid itself, not at a local stand-in."""
    if settings.email_backend != "sendgrid":
        return False
    host = (urlsplit(settings.sendgrid_host).hostname or "").lower()
    return host == "sendgrid.com" or host.endswith(".sendgrid.com")


def enforce(settings: Settings, course: Course) -> list[Problem]:
    """At start: refuse real mail on any error; otherwise log the problems as warnings."""
    problems = check(settings, course)
    if sends_real_mail(settings) and any(problem.level == ERROR for problem in problems):
        raise NotReady(problems)
    for problem in problems:
        log.warning("not ready for real mail: %s: %s", problem.variable, problem.message)
    return problems


def is_reserved_domain(domain: str) -> bool:
    labels = domain.lower().rstrip(".").split(".")
    return labels[-1] in RESERVED_TLDS or ".".join(labels[-2:]) in RESERVED_DOMAINS


def _sender_problems(course: Course) -> list[Problem]:
    problems = []
    for variable, address in (
        ("DRIP_SENDER_EMAIL", course.sender_email),
        ("DRIP_REPLY_TO", course.reply_to),
    ):
        domain = address.rpartition("@")[2]
        if address and is_reserved_domain(domain):
            message = f"{address} is on the reserved domain {domain}: use your own sending domain"
            problems.append(Problem(ERROR, variable, message))
    return problems


def _postal_address_problems(course: Course) -> list[Problem]:
    address = course.postal_address
    if address == SHIPPED_POSTAL_ADDRESS or "example street" in address.lower():
        message = f"{address!r} is a placeholder: CAN-SPAM requires your real postal address"
        return [Problem(ERROR, "DRIP_POSTAL_ADDRESS", message)]
    return []


def _base_url_problems(settings: Settings) -> list[Problem]:
    if urlsplit(settings.base_url).scheme != "https":
        message = (
            f"{settings.base_url} is not https: one-click unsubscribe (RFC 8058) needs an"
            " https link"
        )
        return [Problem(ERROR, "DRIP_BASE_URL", message)]
    return []


def _affiliate_problems(settings: Settings) -> list[Problem]:
    if not settings.affiliate_url:
        message = (
            "unset: the call to action goes to the course file's cta.url, without your"
            " affiliate id, while the disclosure promises a commission"
        )
        return [Problem(ERROR, "DRIP_AFFILIATE_URL", message)]
    return []


def _secret_key_problems(settings: Settings) -> list[Problem]:
    key = settings.secret_key
    if settings.secret_key_generated or not key:
        problem = "unset: the key generated into var/ for development must not sign real links"
    elif len(key) < MIN_SECRET_KEY_CHARS:
        problem = f"{len(key)} characters is too short"
    elif any(word in key.lower() for word in _PLACEHOLDER_KEY_WORDS) or len(set(key)) < 8:
        problem = "looks like a placeholder"
    else:
        return []
    make = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    message = f"{problem}: use at least {MIN_SECRET_KEY_CHARS} random characters, e.g. {make}"
    return [Problem(ERROR, "DRIP_SECRET_KEY", message)]


def _webhook_problems(settings: Settings) -> list[Problem]:
    if not settings.sendgrid_webhook_key:
        message = "unset: bounces and spam complaints would never be suppressed"
        return [Problem(ERROR, "DRIP_SENDGRID_WEBHOOK_KEY", message)]
    return []


def _operator_access_warnings(settings: Settings) -> list[Problem]:
    warnings = []
    if not settings.admin_password:
        message = "unset: /admin refuses every login"
        warnings.append(Problem(WARNING, "DRIP_ADMIN_PASSWORD", message))
    if not settings.metrics_token:
        message = "unset: /metrics is open to anyone who can reach it"
        warnings.append(Problem(WARNING, "DRIP_METRICS_TOKEN", message))
    return warnings
