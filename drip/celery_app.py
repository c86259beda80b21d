"""Celery wired to the Flask app: every task runs inside the app context."""

from __future__ import annotations

import gc
from typing import Any

import redis
from celery import Celery, Task, bootsteps
from celery.signals import worker_process_init
from flask import Flask

from drip import tasks
from drip.config import Settings
from drip.ops.heartbeat import WorkerHeartbeat

# Each @shared_task in these modules joins every Celery app built here.
TASK_MODULES = (tasks,)
WEBHOOK_SWEEP_SECONDS = 10.0


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
        # Task events, so Flower (and `celery events`) show what each worker runs.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": {
            "drip-tick": {
                "task": "drip.tick",
                "schedule": settings.tick_seconds,
                # A tick nobody ran in time is worthless; the next one does its work.
                "options": {"expires": max(settings.tick_seconds * 2, 5)},
            },
            # Webhooks: new events out, due retries again. Often, as receivers expect news soon.
            "drip-webhooks": {
                "task": "drip.webhooks.sweep",
                "schedule": min(settings.tick_seconds, WEBHOOK_SWEEP_SECONDS),
                "options": {"expires": max(min(settings.tick_seconds, WEBHOOK_SWEEP_SECONDS), 5)},
            },
            # Signups wake a sender at once; this finds what a lost wake-up,
            # a provider hiccup or a dead sender's lease left due.
            "drip-confirmations": {
                "task": "drip.send_confirmations",
                "schedule": 10.0,
                "options": {"expires": 10},
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
    # (services.enqueue), and a test process builds several apps side by side.

    app.extensions["celery"] = celery
    _beat_while_running(celery, settings)
    worker_process_init.connect(_freeze_what_is_loaded, weak=False, dispatch_uid="drip-gc-freeze")
    return celery


def _freeze_what_is_loaded(**_: Any) -> None:
    """In each new pool child: what the imports and the app built is there for good.

    gc.freeze() moves it out of the collector's generations (Python's docs on gc.freeze:
    for forked children), so a full collection no longer walks the hundreds of
    thousands of objects Flask, Celery and SQLAlchemy leave behind: a send batch makes
    about ten thousand short-lived objects, and each full collection it triggered walked
    them all (measured: building the request body went from ~7 ms to ~1 ms a batch).
    """
    gc.collect()
    gc.freeze()


def _beat_while_running(celery: Celery, settings: Settings) -> None:
    """Each worker of this app refreshes its heartbeat key from start to stop.

    A bootstep: the worker itself starts and stops it, whoever runs the worker
    (the celery command or a test harness), and a worker of another app built in
    the same process does not run it.
    """

    class Heartbeat(bootsteps.StartStopStep):
        def __init__(self, parent: Any, **options: Any) -> None:
            super().__init__(parent, **options)
            self.beat: WorkerHeartbeat | None = None

        def start(self, parent: Any) -> None:
            client = redis.Redis.from_url(settings.broker_url, socket_timeout=2)
            self.beat = WorkerHeartbeat(client, settings.task_queue, str(parent.hostname))
            self.beat.start()

        def stop(self, parent: Any) -> None:
            if self.beat is not None:
                self.beat.stop()
                self.beat = None

        terminate = stop  # a cold shutdown (and the test harness) calls this one

    celery.steps["worker"].add(Heartbeat)
