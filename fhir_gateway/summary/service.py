"""One place that turns a patient of a facility into summary documents (API, CLI and viewer)."""

from __future__ import annotations

from dataclasses import dataclass

from mappers.serialize import dumps

from . import clins, ips


@dataclass
class Chart:
    patient: dict
    resources: list[dict]     # everything of the patient but the Patient itself
    read_problems: int        # files that could not be read or mapped


def chart(svc, patient_id: str) -> Chart:
    """The patient and their compartment through the service layer (NotFound/Gone propagate)."""
    patient = svc.read("Patient", patient_id)
    data = svc.everything(patient_id)
    rest = [r for r in data.resources
            if not (r.get("resourceType") == "Patient" and r.get("id") == patient_id)]
    return Chart(patient, rest, len(data.problems))


def ips_document(svc, patient_id: str, base_url: str) -> dict:
    c = chart(svc, patient_id)
    fac = svc.facility
    return ips.build(c.patient, c.resources, facility_code=fac.code, facility_name=fac.name,
                     base_url=base_url, read_problems=c.read_problems)


def ips_bytes(svc, patient_id: str, base_url: str) -> bytes:
    return dumps(ips_document(svc, patient_id, base_url))


def clins_bundles(svc, patient_id: str, **options) -> dict:
    c = chart(svc, patient_id)
    result = clins.build(c.patient, c.resources, institution=svc.facility.code, **options)
    if c.read_problems:
        result.warnings.append(f"読めなかったファイル {c.read_problems} 件の内容は含まれていません "
                               "(read-problems)")
    return clins.to_collection(result, patient_id)
