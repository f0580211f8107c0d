"""Small server-side SVG charts: no JavaScript, no assets, nothing fetched.

Every label passes through :func:`markupsafe.escape`, so a series named by untrusted
data cannot inject markup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["bars", "line_chart"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563")


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "$":
        return f"${value:.4f}"
    if unit == "%":
        return f"{value:.0f}%"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    unit: str = "",
    width: int = 560,
    height: int = 200,
) -> Markup:
    """Lines over time (``(unix time, value)`` points per series name)."""
    pad_l, pad_r, pad_t, pad_b = 56, 10, 24, 46
    points = [p for s in series.values() for p in s]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="{pad_l}" y="15" class="ct">{escape(title)}</text>'
    )
    if not points:
        return Markup(
            head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
            "no data yet</text></svg>"
        )
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    vmax = max(max(p[1] for p in points), 1e-9) * 1.1
    t1 = max(t1, t0 + 1)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(t: float) -> float:
        return pad_l + (t - t0) / (t1 - t0) * w

    def y(v: float) -> float:
        return pad_t + h - v / vmax * h

    parts = [head]
    for i in range(5):
        v = vmax * i / 4
        parts.append(
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'class="grid"/><text x="{pad_l - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'class="ax">{escape(_fmt(v, unit))}</text>'
        )
    for t in (t0, (t0 + t1) / 2, t1):
        label = time.strftime("%H:%M:%S", time.localtime(t))
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - pad_b + 12}" text-anchor="middle" '
            f'class="ax">{label}</text>'
        )
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        if len(pts) == 1:
            parts.append(
                f'<circle cx="{x(pts[0][0]):.1f}" cy="{y(pts[0][1]):.1f}" r="3" fill="{colour}"/>'
            )
        else:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
        lx = pad_l + (i % 4) * (w / 4)
        ly = height - 6 - 12 * (i // 4)
        parts.append(
            f'<rect x="{lx:.0f}" y="{ly - 8}" width="10" height="4" fill="{colour}"/>'
            f'<text x="{lx + 14:.0f}" y="{ly - 4}" class="lg">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(
    rows: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    width: int = 560,
    row_height: int = 22,
) -> Markup:
    """Horizontal 100 % stacked bars: one bar per row, its parts per column name."""
    pad_l, pad_t = 90, 24
    columns = sorted({c for parts in rows.values() for c in parts})
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(columns)}
    height = pad_t + row_height * max(1, len(rows)) + 24
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="{pad_l}" y="15" class="ct">{escape(title)}</text>'
    ]
    if not rows:
        out.append(f'<text x="{width / 2}" y="{pad_t + 14}" class="empty">no data yet</text>')
    w = width - pad_l - 10
    for r, (name, parts) in enumerate(sorted(rows.items())):
        total = sum(parts.values()) or 1.0
        yy = pad_t + r * row_height
        out.append(
            f'<text x="{pad_l - 6}" y="{yy + 14}" text-anchor="end" class="ax">{escape(name)}'
            "</text>"
        )
        x = float(pad_l)
        for c in columns:
            value = parts.get(c, 0.0)
            if value <= 0:
                continue
            bw = value / total * w
            out.append(
                f'<rect x="{x:.1f}" y="{yy + 2}" width="{bw:.1f}" height="{row_height - 6}" '
                f'fill="{colours[c]}"><title>{escape(c)}: {value:.0f}</title></rect>'
            )
            if bw > 40:
                out.append(
                    f'<text x="{x + 4:.1f}" y="{yy + 14}" class="in">{escape(c)} '
                    f"{value / total * 100:.0f}%</text>"
                )
            x += bw
    out.append("</svg>")
    return Markup("".join(out))
