"""``_summary`` and ``_elements``: copies of a resource with only some elements (tagged SUBSETTED).

Which elements are "summary" and which are mandatory comes from the R4B definitions in
``fhir.resources`` (R4B equals R4 for the resources served here)."""

from __future__ import annotations

import functools

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}


@functools.lru_cache(maxsize=256)
def _flags(rtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a resource type."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
        cls = get_fhir_model_class(rtype)
    except Exception:
        return frozenset({"id", "meta"}), frozenset()
    summary, required = set(), set()
    for name, f in cls.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        key = f.alias or name
        if extra.get("summary_element_property"):
            summary.add(key)
        if extra.get("element_required"):
            required.add(key)
    return frozenset(summary), frozenset(required)


def _tag(res: dict) -> dict:
    meta = dict(res.get("meta", {}))
    meta["tag"] = list(meta.get("tag", [])) + [SUBSETTED]
    res["meta"] = meta
    return res


def _keep(resource: dict, wanted: set[str]) -> dict:
    out = {"resourceType": resource.get("resourceType")}
    for k, v in resource.items():
        base = k[1:] if k.startswith("_") else k
        if base in wanted or any(base.startswith(w) and base[len(w):][:1].isupper()
                                 for w in wanted):
            out[k] = v
    return out


def summarize(resource: dict, mode: str | None) -> dict:
    if not mode or mode == "false":
        return resource
    rtype = resource.get("resourceType", "")
    summary, required = _flags(rtype)
    if mode == "true":
        return _tag(_keep(resource, set(summary) | set(required) | {"id", "meta"}))
    if mode == "text":
        return _tag(_keep(resource, set(required) | {"id", "meta", "text"}))
    if mode == "data":
        out = {k: v for k, v in resource.items() if k not in ("text", "_text")}
        return _tag(out)
    return resource


def elements(resource: dict, names: list[str]) -> dict:
    if not names:
        return resource
    _, required = _flags(resource.get("resourceType", ""))
    return _tag(_keep(resource, set(names) | set(required) | {"id", "meta"}))
