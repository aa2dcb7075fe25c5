"""Japanese XHTML narratives for summary sections: every value escaped, nothing but tables.

FHIR narratives are limited XHTML (no script, no external references); building them from
escaped cells keeps that true whatever the storage holds."""

from __future__ import annotations

from html import escape

from fhir_gateway.services.medication_summary import concept_text as text_of

from .select import clinical_date, clinical_status

XHTML = "http://www.w3.org/1999/xhtml"

STATUS_JA = {
    "active": "継続中", "recurrence": "再発", "relapse": "再燃", "inactive": "非活動",
    "remission": "寛解", "resolved": "治癒・終了", "completed": "完了", "stopped": "中止",
    "cancelled": "取消", "on-hold": "保留", "draft": "下書き", "unknown": "不明",
    "in-progress": "実施中", "final": "確定", "preliminary": "暫定", "amended": "修正",
}
CRITICALITY_JA = {"low": "低", "high": "高", "unable-to-assess": "評価不能"}
CATEGORY_JA = {"food": "食物", "medication": "薬剤", "environment": "環境", "biologic": "生物"}


def quantity(q: dict | None) -> str:
    if not q or q.get("value") is None:
        return ""
    value = q["value"]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {q.get('unit') or q.get('code') or ''}".strip()


def observation_value(obs: dict) -> str:
    if "valueQuantity" in obs:
        return quantity(obs["valueQuantity"])
    if "valueCodeableConcept" in obs:
        return text_of(obs["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in obs:
            return str(obs[key])
    if obs.get("component"):
        return " / ".join(f"{text_of(c.get('code'))} {observation_value(c)}".strip()
                          for c in obs["component"])
    return text_of(obs.get("dataAbsentReason")) or ""


def dosage(resource: dict) -> str:
    """Dose, timing and route of a MedicationRequest/Administration as one readable line."""
    parts = []
    if resource.get("resourceType") == "MedicationAdministration":
        d = resource.get("dosage") or {}
        parts += [quantity(d.get("dose")), text_of(d.get("route")), d.get("text", "")]
        return "・".join(p for p in parts if p)
    for d in resource.get("dosageInstruction", []):
        dose = next((quantity(x.get("doseQuantity")) for x in d.get("doseAndRate", [])
                     if x.get("doseQuantity")), "")
        timing = text_of((d.get("timing") or {}).get("code")) or d.get("text", "")
        parts += [dose, timing, text_of(d.get("route"))]
        parts += [text_of(a) for a in d.get("additionalInstruction", [])]
    return "・".join(p for p in parts if p)


def date_text(resource: dict) -> str:
    d = clinical_date(resource)
    return d.isoformat() if d else ""


def status_ja(resource: dict) -> str:
    code = clinical_status(resource) or resource.get("status") or ""
    return STATUS_JA.get(code, code)


def table(caption: str, headers: list[str], rows: list[list[str]], note: str = "") -> str:
    """An XHTML ``div`` holding one table; every cell is escaped text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c or '')}</td>" for c in row) + "</tr>"
                   for row in rows)
    extra = f"<p>{escape(note)}</p>" if note else ""
    return (f'<div xmlns="{XHTML}" lang="ja" xml:lang="ja"><table><caption>{escape(caption)}'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{extra}</div>")


def paragraph(text: str) -> str:
    return f'<div xmlns="{XHTML}" lang="ja" xml:lang="ja"><p>{escape(text)}</p></div>'
