"""Running schemathesis (every check, positive and negative data) in-process against the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema


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
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    report = FuzzReport()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(report, event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            report.errors.append(str(getattr(event, "info", event)))
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
