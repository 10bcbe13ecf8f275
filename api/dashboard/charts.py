"""Server-rendered SVG bar charts (no front-end build): every label escaped, one <title>."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, BAR_AREA, ROW = 640, 360, 26


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], unit: str = "") -> Markup:
    """Horizontal bars, one per ``(label, value)``; a missing value is drawn as "no data"."""
    values = [v for _, v in bars if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 1.0
    left = 200  # label column
    zero = left + (0 - low) / span * BAR_AREA
    height = ROW * max(len(bars), 1) + 34
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    if not bars:
        parts.append('<text x="0" y="44">No data in this window.</text>')
    for i, (label, value) in enumerate(bars):
        y = 28 + i * ROW
        parts.append(f'<text x="0" y="{y + 16}">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{left}" y="{y + 16}" fill="#777">no data</text>')
            continue
        x = min(zero, zero + value / span * BAR_AREA)
        w = abs(value) / span * BAR_AREA
        colour = "#c0392b" if value < 0 else "#2e86c1"
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{max(w, 1):.1f}" height="{ROW - 8}" '
            f'fill="{colour}"><title>{escape(label)}: {value:g} {escape(unit)}</title></rect>'
        )
        parts.append(
            f'<text x="{left + BAR_AREA + 8}" y="{y + 16}">{value:,.4g} {escape(unit)}</text>'
        )
    parts.append(f'<line x1="{zero:.1f}" y1="24" x2="{zero:.1f}" y2="{height}" stroke="#999"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every interpolated text is escaped above)


def column_chart(title: str, points: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """Vertical columns over time (one per ``(label, value)``), labelled at both ends."""
    height, top, base = 180, 24, 150
    high = max([1.0, *(v for _, v in points)])
    step = (WIDTH - 40) / max(len(points), 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="{WIDTH - 4}" y="16" text-anchor="end">max {high:g} {escape(unit)}</text>',
    ]
    for i, (label, value) in enumerate(points):
        h = value / high * (base - top)
        parts.append(
            f'<rect x="{20 + i * step:.1f}" y="{base - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="#2e86c1"><title>{escape(label)}: {value:g} '
            f"{escape(unit)}</title></rect>"
        )
    if points:
        parts.append(f'<text x="20" y="{base + 20}">{escape(points[0][0])}</text>')
        last = escape(points[-1][0])
        parts.append(f'<text x="{WIDTH - 20}" y="{base + 20}" text-anchor="end">{last}</text>')
    parts.append(f'<line x1="20" y1="{base}" x2="{WIDTH - 20}" y2="{base}" stroke="#999"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every interpolated text is escaped above)
