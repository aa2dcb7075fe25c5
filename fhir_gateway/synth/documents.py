"""Extended-storage documents: small HL7 CDA R2 files (UTF-8), as NHO stores notes and summaries.

Only the header parts a DocumentReference needs (code, title, effectiveTime, patient, author)
and a readable narrative; JAHIS 診療文書構造化記述規約 details are out of scope.
"""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape

from . import content as C
from .patients import Doctor, Patient


def _cda(patient: Patient, doctor: Doctor, when: datetime, code: str, title: str, body: str,
         facility: str, low: datetime | None = None, high: datetime | None = None) -> bytes:
    period = ""
    if low is not None and high is not None:
        period = (f'<documentationOf><serviceEvent classCode="ACCM"><effectiveTime>'
                  f'<low value="{low:%Y%m%d%H%M}"/><high value="{high:%Y%m%d%H%M}"/></effectiveTime>'
                  f"</serviceEvent></documentationOf>")
    paragraphs = "".join(f"<paragraph>{escape(line)}</paragraph>" for line in body.split("\n"))
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
<id root="1.2.392.100495.20.3.41.1{facility}" extension="{patient.pid}-{when:%Y%m%d%H%M%S}"/>
<code code="{code}" codeSystem="2.16.840.1.113883.6.1" displayName="{escape(title)}"/>
<title>{escape(title)}</title>
<effectiveTime value="{when:%Y%m%d%H%M%S}+0900"/>
<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
<languageCode code="ja-JP"/>
<recordTarget><patientRole><id root="1.2.392.100495.20.3.51.1{facility}" extension="{patient.pid}"/>
<patient><name use="IDE">{escape(patient.family)} {escape(patient.given)}</name>
<name use="SYL">{escape(patient.kana_family)} {escape(patient.kana_given)}</name>
<administrativeGenderCode code="{patient.sex}" codeSystem="2.16.840.1.113883.5.1"/>
<birthTime value="{patient.birth:%Y%m%d}"/></patient></patientRole></recordTarget>
<author><time value="{when:%Y%m%d%H%M%S}+0900"/><assignedAuthor><id extension="{doctor.id}"/>
<assignedPerson><name>{escape(doctor.family)} {escape(doctor.given)}</name></assignedPerson>
<representedOrganization><id root="1.2.392.100495.20.3.23" extension="{facility}"/>
<name>{escape(C.HOSPITAL_NAME)}</name></representedOrganization></assignedAuthor></author>
<custodian><assignedCustodian><representedCustodianOrganization><id extension="{facility}"/>
<name>{escape(C.HOSPITAL_NAME)}</name></representedCustodianOrganization></assignedCustodian></custodian>
{period}<component><structuredBody><component><section><title>{escape(title)}</title>
<text>{paragraphs}</text></section></component></structuredBody></component>
</ClinicalDocument>
"""
    return xml.encode("utf-8")


def progress_note(patient: Patient, doctor: Doctor, when: datetime, problems: str,
                  facility: str) -> bytes:
    body = (f"S）体調は変わりない。\nO）診察所見に著変なし。\nA）{problems}　経過良好。\n"
            "P）現行治療を継続。次回再診。")
    return _cda(patient, doctor, when, "11506-3", "経過記録", body, facility)


def discharge_summary(patient: Patient, doctor: Doctor, admitted: datetime, discharged: datetime,
                      reason: str, history: list[str], facility: str) -> bytes:
    past = "、".join(history) or "特記事項なし"
    body = (f"入院日：{admitted:%Y年%m月%d日}　退院日：{discharged:%Y年%m月%d日}\n"
            f"主病名：{reason}\n既往歴：{past}\n"
            f"経過：{reason}にて入院。加療により軽快し退院となった。\n退院後：外来にて経過観察。")
    return _cda(patient, doctor, discharged, "18842-5", "退院時サマリー", body, facility,
                admitted, discharged)
