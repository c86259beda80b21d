"""Small charts drawn on the server as inline SVG: no script, nothing fetched at view time.

Each chart scales to its container (viewBox), names itself for screen readers,
and carries each value in a <title> that browsers show on hover.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 24, 14, 36
PALETTE = ("#2f6fba", "#c2662d", "#3a8f5c")
MAX_X_LABELS = 12
Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


def percent(value: float) -> str:
    return f"{value:.1%}"


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above the largest value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if value <= step * power)


def _plot() -> tuple[float, float]:
    return WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _frame(title: str, top: float, fmt: Format) -> list[str]:
    width, height = _plot()
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + height * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(fmt(top * fraction))}</text>"
        )
    return parts


def _x_labels(labels: Sequence[str], centers: Sequence[float]) -> list[str]:
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    y = HEIGHT - BOTTOM + 16
    return [
        f'<text x="{x:.1f}" y="{y}" text-anchor="middle" class="axis">{escape(label)}</text>'
        for index, (label, x) in enumerate(zip(labels, centers, strict=True))
        if index % every == 0 or index == len(labels) - 1
    ]


def _legend(series: Sequence[Series]) -> list[str]:
    if len(series) < 2:
        return []
    parts, x = [], LEFT
    for index, one in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 12}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 3}" class="axis">{escape(one.name)}</text>'
        )
        x += 24 + 8 * len(one.name)
    return parts


def bar_chart(
    labels: Sequence[str], series: Sequence[Series], *, title: str, fmt: Format = number
) -> Markup:
    """Bars grouped per label, one colour per series."""
    width, height = _plot()
    top = nice_ceiling(max((v for one in series for v in one.values), default=0))
    slot = width / max(1, len(labels))
    bar = slot * 0.8 / max(1, len(series))
    parts = _frame(title, top, fmt)
    for index, label in enumerate(labels):
        for which, one in enumerate(series):
            value = one.values[index]
            bar_height = height * value / top
            x = LEFT + index * slot + slot * 0.1 + which * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + height - bar_height:.1f}" width="{bar:.1f}" '
                f'height="{bar_height:.1f}" fill="{PALETTE[which % len(PALETTE)]}">'
                f"<title>{escape(label)} · {escape(one.name)}: {escape(fmt(value))}</title></rect>"
            )
    centers = [LEFT + (index + 0.5) * slot for index in range(len(labels))]
    parts += [*_x_labels(labels, centers), *_legend(series), "</svg>"]
    return Markup("".join(parts))


def line_chart(
    labels: Sequence[str], values: Sequence[float], *, title: str, fmt: Format = number
) -> Markup:
    width, height = _plot()
    top = nice_ceiling(max(values, default=0))
    step = width / max(1, len(values) - 1)
    points = [
        (LEFT + index * step, TOP + height * (1 - value / top))
        for index, value in enumerate(values)
    ]
    parts = _frame(title, top, fmt)
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for (x, y), label, value in zip(points, labels, values, strict=True):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title></circle>"
        )
    parts += [*_x_labels(labels, [x for x, _ in points]), "</svg>"]
    return Markup("".join(parts))
