"""Development outbox viewer: the .eml files the outbox backend wrote, newest first."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, abort, render_template
from werkzeug.wrappers import Response

from drip.services import current_services

blueprint = Blueprint("outbox", __name__)


def _outbox_dir() -> Path:
    return current_services().settings.outbox_dir


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@blueprint.get("/outbox")
def index() -> str:
    directory = _outbox_dir()
    files = sorted(directory.glob("*.eml"), reverse=True)[:200] if directory.exists() else []
    messages = []
    for path in files:
        message = _parse(path)
        messages.append({"name": path.name, "to": message["To"], "subject": message["Subject"]})
    return render_template("outbox.html", messages=messages)


@blueprint.get("/outbox/<name>")
def show(name: str) -> str:
    path = _safe_path(name)
    message = _parse(path)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    return render_template(
        "outbox_message.html",
        name=name,
        headers=list(message.items()),
        html=html_part.get_content() if html_part else "",
        text=text_part.get_content() if text_part else "",
    )


@blueprint.get("/outbox/<name>/raw")
def raw(name: str) -> Response:
    return Response(_safe_path(name).read_bytes(), mimetype="message/rfc822")


def _safe_path(name: str) -> Path:
    # Only plain file names from the outbox itself: no paths, no dot files.
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".eml"):
        abort(404)
    path = _outbox_dir() / name
    if not path.is_file():
        abort(404)
    return path
