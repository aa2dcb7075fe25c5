"""Server-rendered SVG trend charts for one lab test.

Follows the criteria of Sittig et al. (JAMIA 2015): a true time axis (unequal intervals stay
unequal), the y-axis labelled with the test name *and* unit, the reference range shaded, each
point's exact value and date on hover (an SVG <title>, no script), the patient ID in the title.
Only presentation attributes are used (no style=""), so the strict CSP holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from . import fhirview as fv
from .models import LabPoint, LabTest

W, H = 420, 250
ML, MR, MT, MB = 62, 34, 30, 46  # text is 14 px in a 420-wide box: >= 11 px on a phone


MAX_TICKS = 12


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Up to ``MAX_TICKS`` round values in [lo, hi] for any finite input.

    Ticks are ``k * step`` for whole k (never a running ``v += step``: when the step is below the
    precision of the values, adding it changes nothing and such a loop never ends — issue 13 H1)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    if not math.isfinite(raw) or raw <= 0:
        return [lo, hi] if math.isfinite(hi - lo) else [lo]
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    if k1 - k0 > MAX_TICKS:
        return [lo, hi]
    ticks: list[float] = []
    for k in range(k0, k1 + 1):
        v = round(k * step, 10)
        if math.isfinite(v) and (not ticks or v != ticks[-1]):
            ticks.append(v)
    return ticks


def _value_range(values: list[float]) -> tuple[float, float] | None:
    """The padded y range, or None when it cannot be drawn (the table still shows the values).

    A spread below what a float can tell apart is drawn as a flat line in a 2% band."""
    lo, hi = min(values), max(values)
    width = hi - lo
    if not math.isfinite(width):
        return None
    if width <= max(abs(lo), abs(hi)) * 1e-9:
        pad = max(abs(hi) * 0.01, 1.0)
    else:
        pad = width * 0.1
    lo, hi = lo - pad, hi + pad
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return None
    return lo, hi


def _fmt(v: float) -> str:
    return f"{v:.6g}"


@dataclass(frozen=True)
class _Frame:
    """The plot area of one chart: a true time axis [t0, t1] and a value axis [lo, hi]."""

    t0: datetime
    t1: datetime
    lo: float
    hi: float

    @classmethod
    def of(cls, t0: datetime, t1: datetime, lo: float, hi: float) -> _Frame:
        """At least one day wide, so a single day's results still spread along the axis."""
        if t1 - t0 < timedelta(days=1):
            t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
        return cls(t0, t1, lo, hi)

    def x(self, t: datetime) -> float:
        return ML + (t - self.t0).total_seconds() / (self.t1 - self.t0).total_seconds() * PW

    def y(self, v: float) -> float:
        return MT + (self.hi - v) / (self.hi - self.lo) * PH

    def tick_time(self, i: int, n: int) -> datetime:
        return self.t0 + (self.t1 - self.t0) * i / n


PW, PH = W - ML - MR, H - MT - MB


def _y_grid(f: _Frame) -> list[str]:
    """Horizontal grid lines with their round values on the y axis."""
    out = []
    for v in _nice_ticks(f.lo, f.hi):
        yy = f.y(v)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ML - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick" font-size="14">{_fmt(v)}</text>')
    return out


def _axes() -> list[str]:
    return [f'<line x1="{ML}" x2="{ML}" y1="{MT}" y2="{H - MB}" stroke="#333"/>',
            f'<line x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}" stroke="#333"/>']


def _range_band(test: LabTest, f: _Frame) -> list[str]:
    """The reference range as a shaded band (clipped to the plot), empty when there is none."""
    if test.low is None and test.high is None:
        return []
    rl = max(test.low if test.low is not None else f.lo, f.lo)
    rh = min(test.high if test.high is not None else f.hi, f.hi)
    if rh <= rl:
        return []
    return [f'<rect class="band" x="{ML}" y="{f.y(rh):.1f}" width="{PW}" '
            f'height="{f.y(rl) - f.y(rh):.1f}" fill="#d9f2d9"><title>{escape(test.range_text)}</title></rect>']


def _point(t: datetime, p: LabPoint, value: float, prev: float | None, unit: str, f: _Frame) -> str:
    """One result: coloured by its abnormal flag, its exact value, date and change in a <title>."""
    cls = "pt hi" if p.flag.startswith("H") else "pt lo" if p.flag.startswith("L") else "pt"
    fill = "#c62828" if p.flag.startswith("H") else "#1565c0" if p.flag.startswith("L") else "#222"
    delta = ""
    if prev is not None:
        d = value - prev
        delta = f" (Δ {'+' if d >= 0 else ''}{_fmt(d)})"
    tip = f"{t.strftime('%Y-%m-%d %H:%M')}: {p.text} {unit}{(' ' + p.flag) if p.flag else ''}{delta}"
    return (f'<circle class="{cls}" cx="{f.x(t):.1f}" cy="{f.y(value):.1f}" r="3.5" fill="{fill}">'
            f"<title>{escape(tip)}</title></circle>")


def _lab_points(test: LabTest) -> list[tuple[datetime, LabPoint, float]]:
    """The test's results that can be placed: a parseable time and a finite value."""
    out = []
    for p in test.numeric:
        t = fv.parse_dt(p.when)
        if t is not None and p.value is not None and math.isfinite(p.value):
            out.append((t, p, p.value))
    return out


def trend_svg(test: LabTest, patient_id: str, lang: str = "ja") -> Markup:
    pts = _lab_points(test)
    label = f"{test.name} ({test.unit})" if test.unit else test.name
    title = f"{label} — {'患者ID' if lang != 'en' else 'Patient ID'} {patient_id}"
    if not pts:
        return Markup("")
    limits = [x for x in (test.low, test.high) if x is not None and math.isfinite(x)]
    rng = _value_range([v for _, _, v in pts] + limits)
    if rng is None:
        return Markup("")
    f = _Frame.of(pts[0][0], pts[-1][0], *rng)
    out = [f'<svg class="trend" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>",
           f'<text x="{W / 2:.0f}" y="18" text-anchor="middle" class="ct" font-size="15">{escape(title)}</text>']
    out += _range_band(test, f)
    out += _y_grid(f)
    # x ticks: 4 evenly spaced instants labelled with their dates
    n = 3
    for i in range(n + 1):
        t = f.tick_time(i, n)
        xx = f.x(t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{MT}" y2="{H - MB}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick" font-size="14">'
                   f'{t.strftime("%Y-%m-%d")}</text>')
    out += _axes()
    out.append(f'<text class="axis" font-size="14" x="14" y="{MT + PH / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {MT + PH / 2:.0f})">{escape(label)}</text>')
    xl = "採取日時" if lang != "en" else "Collection date"
    out.append(f'<text class="axis" font-size="14" x="{ML + PW / 2:.0f}" y="{H - 6}" text-anchor="middle">{xl}</text>')
    line = " ".join(f"{f.x(t):.1f},{f.y(v):.1f}" for t, _, v in pts)
    out.append(f'<polyline points="{line}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
    prev: float | None = None
    for t, p, v in pts:
        out.append(_point(t, p, v, prev, test.unit, f))
        prev = v
    out.append("</svg>")
    return Markup("".join(out))


COLORS = ("#1f5fa8", "#c62828", "#2e7d32")


def series_svg(title: str, unit: str, series: list[tuple[str, list[tuple[str, float]]]],
               patient_id: str, lang: str = "ja") -> Markup:
    """Several series on one time axis (blood pressure: systolic and diastolic together), same
    rules as :func:`trend_svg`: true time spacing, y label with unit, every point's value in a
    <title>, a legend in text (not colour alone)."""
    pts: list[tuple[str, list[tuple[datetime, float]]]] = []
    for name, raw in series:
        placed = [(t, v) for t, v in ((fv.parse_dt(w), v) for w, v in raw) if t is not None]
        if placed:
            pts.append((name, placed))
    if not pts:
        return Markup("")
    values = [v for _, s in pts for _, v in s]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    times = [t for _, s in pts for t, _ in s]
    f = _Frame.of(min(times), max(times), lo - pad, hi + pad)

    label = f"{title} ({unit})" if unit else title
    full = f"{label} — {'患者ID' if lang != 'en' else 'Patient ID'} {patient_id}"
    out = [f'<svg class="trend" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(full)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(full)}</title>',
           f'<text x="{W / 2:.0f}" y="18" text-anchor="middle" class="ct" font-size="15">{escape(label)}</text>']
    out += _y_grid(f)
    for i in range(4):
        t = f.tick_time(i, 3)
        out.append(f'<text x="{f.x(t):.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick" '
                   f'font-size="14">{t.strftime("%Y-%m-%d")}</text>')
    out += _axes()
    for i, (name, s) in enumerate(pts):
        color = COLORS[i % len(COLORS)]
        line = " ".join(f"{f.x(t):.1f},{f.y(v):.1f}" for t, v in s)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for t, v in s[-400:]:
            out.append(f'<circle cx="{f.x(t):.1f}" cy="{f.y(v):.1f}" r="2.5" fill="{color}">'
                       f'<title>{escape(name)} {t.strftime("%Y-%m-%d %H:%M")}: {_fmt(v)} {escape(unit)}</title></circle>')
        out.append(f'<text x="{ML + 8 + i * 120}" y="{H - 6}" class="axis" font-size="14" fill="{color}">'
                   f'{"●" if i == 0 else "▲"} {escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
