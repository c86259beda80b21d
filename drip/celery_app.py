"""Celery wired to the Flask app: every task runs inside the app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from drip.config import Settings

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def celery_config(settings: Settings) -> dict[str, Any]:
    broker = settings.redis_url or DEFAULT_BROKER
    return {
        "broker_url": broker,
        "task_ignore_result": True,
        "task_default_queue": settings.task_queue,
        "result_backend": None,
        # Send tasks claim their rows before acting, so running one twice is
        # harmless; acks_late then means a killed worker loses nothing
        # (FACTS: acks_late only for idempotent tasks, prefetch 1, reject on lost).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 3600},
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "drip-tick": {
                "task": "drip.tick",
                "schedule": settings.tick_seconds,
                # A tick nobody ran in time is worthless; the next one does its work.
                "options": {"expires": max(settings.tick_seconds * 2, 5)},
            },
            "drip-housekeeping": {
                "task": "drip.housekeeping",
                "schedule": 600.0,
                "options": {"expires": 600},
            },
        },
        "beat_schedule_filename": str(settings.var_dir / "celerybeat-schedule"),
    }


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings))
    # Not made the process default: we always queue through this app object
    # (tasks.enqueue), and a test process builds several apps side by side.
    # Importing registers the @shared_task functions with this app.
    import drip.tasks  # noqa: F401

    app.extensions["celery"] = celery
    return celery
