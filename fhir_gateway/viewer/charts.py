"""Server-rendered SVG trend charts for one lab test.

Follows the criteria of Sittig et al. (JAMIA 2015): a true time axis (unequal intervals stay
unequal), the y-axis labelled with the test name *and* unit, the reference range shaded, each
point's exact value and date on hover (an SVG <title>, no script), the patient ID in the title.
Only presentation attributes are used (no style=""), so the strict CSP holds.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from . import fhirview as fv
from .models import LabTest

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


def trend_svg(test: LabTest, patient_id: str, lang: str = "ja") -> Markup:
    pts = [(fv.parse_dt(p.when), p) for p in test.numeric]
    pts = [(t, p) for t, p in pts if t is not None and math.isfinite(p.value)]
    label = f"{test.name} ({test.unit})" if test.unit else test.name
    title = f"{label} — {'患者ID' if lang != 'en' else 'Patient ID'} {patient_id}"
    if not pts:
        return Markup("")
    t0, t1 = pts[0][0], pts[-1][0]
    if t1 - t0 < timedelta(days=1):
        t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
    values = [p.value for _, p in pts]
    limits = [x for x in (test.low, test.high) if x is not None and math.isfinite(x)]
    rng = _value_range(values + limits)
    if rng is None:
        return Markup("")
    lo, hi = rng
    pw, ph = W - ML - MR, H - MT - MB
    span = (t1 - t0).total_seconds()

    def x(t: datetime) -> float:
        return ML + (t - t0).total_seconds() / span * pw

    def y(v: float) -> float:
        return MT + (hi - v) / (hi - lo) * ph

    out = [f'<svg class="trend" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>",
           f'<text x="{W / 2:.0f}" y="18" text-anchor="middle" class="ct" font-size="15">{escape(title)}</text>']
    if test.low is not None or test.high is not None:
        rl = test.low if test.low is not None else lo
        rh = test.high if test.high is not None else hi
        rl, rh = max(rl, lo), min(rh, hi)
        if rh > rl:
            out.append(f'<rect class="band" x="{ML}" y="{y(rh):.1f}" width="{pw}" '
                       f'height="{y(rl) - y(rh):.1f}" fill="#d9f2d9"><title>{escape(test.range_text)}</title></rect>')
    for v in _nice_ticks(lo, hi):
        yy = y(v)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ML - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick" font-size="14">{_fmt(v)}</text>')
    # x ticks: 4 evenly spaced instants labelled with their dates
    n = 3
    for i in range(n + 1):
        t = t0 + (t1 - t0) * i / n
        xx = x(t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{MT}" y2="{H - MB}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick" font-size="14">'
                   f'{t.strftime("%Y-%m-%d")}</text>')
    out.append(f'<line x1="{ML}" x2="{ML}" y1="{MT}" y2="{H - MB}" stroke="#333"/>')
    out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}" stroke="#333"/>')
    out.append(f'<text class="axis" font-size="14" x="14" y="{MT + ph / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {MT + ph / 2:.0f})">{escape(label)}</text>')
    xl = "採取日時" if lang != "en" else "Collection date"
    out.append(f'<text class="axis" font-size="14" x="{ML + pw / 2:.0f}" y="{H - 6}" text-anchor="middle">{xl}</text>')
    line = " ".join(f"{x(t):.1f},{y(p.value):.1f}" for t, p in pts)
    out.append(f'<polyline points="{line}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
    prev = None
    for t, p in pts:
        cls = "pt hi" if p.flag.startswith("H") else "pt lo" if p.flag.startswith("L") else "pt"
        fill = "#c62828" if p.flag.startswith("H") else "#1565c0" if p.flag.startswith("L") else "#222"
        delta = ""
        if prev is not None:
            d = p.value - prev
            delta = f" (Δ {'+' if d >= 0 else ''}{_fmt(d)})"
        tip = f"{t.strftime('%Y-%m-%d %H:%M')}: {p.text} {test.unit}{(' ' + p.flag) if p.flag else ''}{delta}"
        out.append(f'<circle class="{cls}" cx="{x(t):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{fill}">'
                   f"<title>{escape(tip)}</title></circle>")
        prev = p.value
    out.append("</svg>")
    return Markup("".join(out))


COLORS = ("#1f5fa8", "#c62828", "#2e7d32")


def series_svg(title: str, unit: str, series: list[tuple[str, list[tuple[str, float]]]],
               patient_id: str, lang: str = "ja") -> Markup:
    """Several series on one time axis (blood pressure: systolic and diastolic together), same
    rules as :func:`trend_svg`: true time spacing, y label with unit, every point's value in a
    <title>, a legend in text (not colour alone)."""
    pts = [(label, [(fv.parse_dt(w), v) for w, v in s]) for label, s in series if s]
    pts = [(label, [(t, v) for t, v in s if t is not None]) for label, s in pts]
    pts = [(label, s) for label, s in pts if s]
    if not pts:
        return Markup("")
    times = [t for _, s in pts for t, _ in s]
    values = [v for _, s in pts for _, v in s]
    t0, t1 = min(times), max(times)
    if t1 - t0 < timedelta(days=1):
        t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    pw, ph = W - ML - MR, H - MT - MB
    span = (t1 - t0).total_seconds()

    def x(t: datetime) -> float:
        return ML + (t - t0).total_seconds() / span * pw

    def y(v: float) -> float:
        return MT + (hi - v) / (hi - lo) * ph

    label = f"{title} ({unit})" if unit else title
    full = f"{label} — {'患者ID' if lang != 'en' else 'Patient ID'} {patient_id}"
    out = [f'<svg class="trend" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(full)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(full)}</title>',
           f'<text x="{W / 2:.0f}" y="18" text-anchor="middle" class="ct" font-size="15">{escape(label)}</text>']
    for v in _nice_ticks(lo, hi):
        yy = y(v)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ML - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick" font-size="14">{_fmt(v)}</text>')
    for i in range(4):
        t = t0 + (t1 - t0) * i / 3
        out.append(f'<text x="{x(t):.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick" '
                   f'font-size="14">{t.strftime("%Y-%m-%d")}</text>')
    out.append(f'<line x1="{ML}" x2="{ML}" y1="{MT}" y2="{H - MB}" stroke="#333"/>')
    out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}" stroke="#333"/>')
    for i, (name, s) in enumerate(pts):
        color = COLORS[i % len(COLORS)]
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for t, v in s[-400:]:
            out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                       f'<title>{escape(name)} {t.strftime("%Y-%m-%d %H:%M")}: {_fmt(v)} {escape(unit)}</title></circle>')
        out.append(f'<text x="{ML + 8 + i * 120}" y="{H - 6}" class="axis" font-size="14" fill="{color}">'
                   f'{"●" if i == 0 else "▲"} {escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
