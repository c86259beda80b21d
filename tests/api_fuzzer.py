"""Running schemathesis (every check, positive and negative data) in-process against the app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema
from werkzeug.serving import make_server


@dataclass
class FuzzReport:
    cases: int = 0
    operations: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def fuzz(app: Any, *, headers: dict[str, str], seed: int, max_examples: int) -> FuzzReport:
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "headers": headers,
            "generation": {"mode": "all", "max-examples": max_examples},
            "checks": {"enabled": True},
        }
    )
    report = FuzzReport()
    # A live server on 127.0.0.1 rather than schemathesis's WSGI transport, which does
    # not take every option its stateful phase passes.
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/openapi.json"
        schema = schemathesis.openapi.from_url(url, config=config)
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                _record(report, event)
            elif isinstance(event, events.NonFatalError | events.FatalError):
                report.errors.append(str(getattr(event, "info", event)))
    finally:
        server.shutdown()
        thread.join()
    return report


def _record(report: FuzzReport, event: events.ScenarioFinished) -> None:
    recorder = event.recorder
    report.cases += len(recorder.cases)
    report.operations.add(recorder.label)
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                case = recorder.cases[case_id].value
                info = check.failure_info.failure
                report.failures.append(
                    f"{recorder.label} {check.name}: {info.title} {info.message[:300]} "
                    f"[{case.method} {case.formatted_path} body={str(case.body)[:200]}]"
                )
