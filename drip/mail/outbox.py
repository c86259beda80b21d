"""The development backend: every message becomes one .eml file, as a mailbox would get it."""

from __future__ import annotations

import os
import secrets
import time
from email.utils import make_msgid
from pathlib import Path

from drip.mail.base import Batch, SendResult, apply_substitutions
from drip.mail.mime import build_message


class OutboxMailer:
    name = "outbox"

    def __init__(self, directory: Path, domain: str = "drip.local") -> None:
        self.directory = directory
        self.domain = domain

    def send(self, batch: Batch) -> list[SendResult]:
        self.directory.mkdir(parents=True, exist_ok=True)
        results = []
        for recipient in batch.recipients:
            message_id = make_msgid(domain=self.domain)
            data = build_message(
                from_email=batch.from_email,
                from_name=batch.from_name,
                to_email=recipient.email,
                to_name=recipient.name,
                subject=apply_substitutions(batch.subject, recipient.substitutions),
                html=apply_substitutions(batch.html, recipient.substitutions),
                text=apply_substitutions(batch.text, recipient.substitutions),
                reply_to=batch.reply_to,
                headers=recipient.headers,
                message_id=message_id,
            )
            self._write(recipient.key, data)
            results.append(SendResult(recipient.key, accepted=True, message_id=message_id))
        return results

    def _write(self, key: str, data: bytes) -> None:
        # Written to a temporary name and renamed, so a reader never sees half a message.
        name = f"{time.time_ns()}-{key}-{secrets.token_hex(3)}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, self.directory / name)
