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
