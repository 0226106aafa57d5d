"""Charts as inline SVG, drawn on the server: no script, no build step, and they print.

Every chart has a ``<title>`` and an ``aria-label`` with its numbers in words, so a screen
reader gets the figures the picture shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def sparkline(values: Sequence[float], label: str, width: int = 96, height: int = 24) -> Markup:
    """A small line of ``values`` (oldest first) with the last point marked."""
    if not values:
        return Markup("")
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    points = [(i * step, height - 2 - (v / top) * (height - 4)) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    text = escape(label)
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{text}"><title>{text}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2" fill="currentColor"/></svg>'
    )


def bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    title: str,
    height: int = 160,
) -> Markup:
    """Grouped bars, one group per label; ``series`` is ``(name, css class, values)``."""
    count = len(labels)
    if not count:
        return Markup("")
    group = 24
    width = count * group
    top = max((max(values) for _n, _c, values in series if values), default=0) or 1
    bar = (group - 6) / len(series)
    shapes = []
    for s, (name, css, values) in enumerate(series):
        for i, value in enumerate(values):
            h = (value / top) * (height - 20)
            x = i * group + 3 + s * bar
            shapes.append(
                f'<rect class="{css}" x="{x:.1f}" y="{height - 14 - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(labels[i])}: '
                f"{escape(name)} {value:g}</title></rect>"
            )
    ticks = [
        f'<text x="{i * group + group / 2:.1f}" y="{height - 2}" text-anchor="middle">'
        f"{escape(labels[i])}</text>"
        for i in range(0, count, max(count // 6, 1))
    ]
    summary = "; ".join(f"{name} {sum(values):g} in total" for name, _c, values in series)
    text = escape(f"{title}: {summary}")
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="{text}"><title>{text}</title>{"".join(shapes)}'
        f'<g class="ticks">{"".join(ticks)}</g></svg>'
    )
