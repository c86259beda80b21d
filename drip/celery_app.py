"""Celery wired to the Flask app: every task runs inside the app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from drip import tasks
from drip.config import Settings

# Each @shared_task in these modules joins every Celery app built here.
TASK_MODULES = (tasks,)


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "task_ignore_result": True,
        "task_default_queue": settings.task_queue,
        "result_backend": None,
        # Send tasks claim their rows before acting, so running one twice is
        # harmless; acks_late then means a killed worker loses nothing
        # (Celery's docs: acks_late only for idempotent tasks, with prefetch 1 and
        # task_reject_on_worker_lost, or a SIGKILLed child's task is acked anyway).
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
            # Signups wake a sender at once; this finds what a lost wake-up,
            # a provider hiccup or a dead sender's lease left due.
            "drip-confirmations": {
                "task": "drip.send_confirmations",
                "schedule": 10.0,
                "options": {"expires": 10},
            },
            "drip-housekeeping": {
                "task": "drip.subscribers.housekeeping",
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
    # (services.enqueue), and a test process builds several apps side by side.

    app.extensions["celery"] = celery
    return celery
