"""Response formats: FHIR JSON (default) and FHIR XML, and content negotiation.

XML is written by a small serialiser that follows the FHIR XML rules (primitives as ``value``
attributes, ``_element`` companions merged, ``url`` on extensions, contained resources wrapped,
the narrative ``div`` as XHTML) and orders elements by the R4B model definitions of
``fhir.resources`` where it knows the type (falling back to the dict's own order).  It works on
the plain dicts, so no value is rewritten (instants and decimals stay as mapped)."""

from __future__ import annotations

import functools
import logging
import typing
from decimal import Decimal
from typing import Any

from lxml import etree

from fhir_gateway import textsafe
from mappers.serialize import dumps

log = logging.getLogger(__name__)

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
JSON = "application/fhir+json"
XML = "application/fhir+xml"

# Accept / _format values -> our media type
_ALIASES = {
    "application/fhir+json": JSON, "application/json": JSON, "json": JSON, "text/json": JSON,
    "application/json+fhir": JSON,
    "application/fhir+xml": XML, "application/xml": XML, "xml": XML, "text/xml": XML,
    "application/xml+fhir": XML,
}


class NotAcceptable(ValueError):
    pass


def negotiate(fmt: str | None, accept: str | None) -> str:
    """Choose JSON or XML from ``_format`` (wins) or the Accept header; NotAcceptable if neither."""
    if fmt:
        mt = _ALIASES.get(fmt.strip().lower().split(";")[0])
        if mt is None:
            raise NotAcceptable(f"_format={fmt} is not supported (json or xml)")
        return mt
    if not accept:
        return JSON
    ranges = []
    for i, part in enumerate(accept.split(",")):
        bits = [b.strip() for b in part.split(";")]
        mt = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
            elif b.lower().startswith("fhirversion=") and not b.split("=", 1)[1].strip(
                    '"').startswith("4.0"):
                q = 0.0  # we serve FHIR R4 (4.0.1) only
        ranges.append((q, -i, mt))
    for q, _, mt in sorted(ranges, reverse=True):
        if q <= 0:
            continue
        if mt in _ALIASES:
            return _ALIASES[mt]
        if mt in ("*/*", "application/*", "text/*"):
            return JSON
    raise NotAcceptable(f"none of {accept!r} can be produced (application/fhir+json, "
                        "application/fhir+xml)")


def render(resource: dict, media_type: str, pretty: bool = False) -> bytes:
    return render_checked(resource, media_type, pretty)[0]


def render_checked(resource: dict, media_type: str, pretty: bool = False) -> tuple[bytes, int]:
    """(body, number of characters replaced because XML 1.0 forbids them — always 0 for JSON,
    which escapes every control character)."""
    if media_type == XML:
        return to_xml_checked(resource, pretty)
    return dumps(resource, pretty), 0


# -- XML ----------------------------------------------------------------------------------------


def _leaf(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if not args:
        return annotation
    for a in args:
        if a is not type(None):
            return _leaf(a)
    return annotation


@functools.lru_cache(maxsize=2048)
def _model(type_name: str | None) -> tuple[tuple[str, ...], dict[str, str]] | None:
    """(element order, child type names) of an R4B type, or None if unknown."""
    if not type_name:
        return None
    try:
        from fhir.resources.R4B import get_fhir_model_class
        cls = get_fhir_model_class(type_name)
    except Exception:
        return None
    children = {}
    for fname, f in cls.model_fields.items():
        leaf = _leaf(f.annotation)
        name = getattr(leaf, "__name__", "")
        if name.endswith("Type") and name[0].isupper():
            children[f.alias or fname] = name[:-4]
    return tuple(cls.elements_sequence()), children


def _ordered_keys(node: dict, type_name: str | None) -> list[str]:
    keys = [k for k in node if k != "resourceType" and not k.startswith("_")]
    keys += [k[1:] for k in node if k.startswith("_") and k[1:] not in node]
    model = _model(type_name)
    if model is None:
        return keys
    order = {k: i for i, k in enumerate(model[0])}
    return sorted(keys, key=lambda k: (order.get(k, len(order)), keys.index(k)))


def _prim(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _resource(parent: etree._Element | None, res: dict) -> etree._Element:
    rtype = res.get("resourceType", "Resource")
    el = etree.Element(f"{{{FHIR_NS}}}{rtype}", nsmap={None: FHIR_NS}) if parent is None else \
        etree.SubElement(parent, f"{{{FHIR_NS}}}{rtype}")
    _fill(el, res, rtype, is_resource=True)
    return el


def _fill(el: etree._Element, node: dict, type_name: str | None, is_resource: bool = False) -> None:
    model = _model(type_name)
    children = model[1] if model else {}
    if not is_resource and "id" in node and isinstance(node["id"], str):
        el.set("id", node["id"])
    if type_name == "Extension" and isinstance(node.get("url"), str):
        el.set("url", node["url"])
    for key in _ordered_keys(node, type_name):
        if not is_resource and key == "id":
            continue
        if key == "url" and el.get("url") is not None:
            continue
        val = node.get(key)
        ext = node.get("_" + key)
        if key == "div" and isinstance(val, str):
            _xhtml(el, val)
            continue
        vals = val if isinstance(val, list) else [val]
        exts = ext if isinstance(ext, list) else [ext] * len(vals)
        if val is None:
            vals = [None] * (len(exts) if isinstance(ext, list) else 1)
        for i, v in enumerate(vals):
            e = exts[i] if i < len(exts) else None
            _element(el, key, v, e, children.get(key) or _guess(key, v))


def _guess(key: str, v: Any) -> str | None:
    if key in ("extension", "modifierExtension"):
        return "Extension"
    return None


def _element(parent: etree._Element, key: str, v: Any, ext: Any, type_name: str | None) -> None:
    if isinstance(v, dict) and "resourceType" in v:
        wrapper = etree.SubElement(parent, f"{{{FHIR_NS}}}{key}")
        _resource(wrapper, v)
        return
    child = etree.SubElement(parent, f"{{{FHIR_NS}}}{key}")
    if isinstance(v, dict):
        _fill(child, v, type_name)
        return
    if v is not None:
        child.set("value", _prim(v))
    if isinstance(ext, dict):
        if ext.get("id"):
            child.set("id", ext["id"])
        for x in ext.get("extension", ()):
            _element(child, "extension", x, None, "Extension")


def _xhtml(parent: etree._Element, text: str) -> None:
    try:
        div = etree.fromstring(text)
        if div.tag != f"{{{XHTML_NS}}}div":
            raise ValueError("not an XHTML div")
    except (etree.XMLSyntaxError, ValueError):
        div = etree.Element(f"{{{XHTML_NS}}}div", nsmap={None: XHTML_NS})
        div.text = text
    parent.append(div)


def to_xml(resource: dict, pretty: bool = False) -> bytes:
    return to_xml_checked(resource, pretty)[0]


def to_xml_checked(resource: dict, pretty: bool = False) -> tuple[bytes, int]:
    """The resource as FHIR XML, and how many characters XML 1.0 forbids (``\\x01`` in a stored
    name) were replaced by U+FFFD.  The fast path builds the tree directly; only when lxml
    refuses a string is the resource copied with the bad characters replaced (issue 13 M4)."""
    replaced = 0
    try:
        root = _resource(None, resource)
    except ValueError:
        resource, replaced = _clean_tree(resource)
        root = _resource(None, resource)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=pretty)
    if replaced:
        log.warning("%s/%s: %d character(s) XML 1.0 forbids replaced by U+FFFD in the XML output",
                    resource.get("resourceType"), resource.get("id"), replaced)
    return body, replaced


def _clean_tree(node: Any) -> tuple[Any, int]:
    if isinstance(node, str):
        return textsafe.replace(node)
    if isinstance(node, dict):
        out, n = {}, 0
        for k, v in node.items():
            ck, a = _clean_tree(k)
            cv, b = _clean_tree(v)
            out[ck] = cv
            n += a + b
        return out, n
    if isinstance(node, list):
        items = [_clean_tree(v) for v in node]
        return [v for v, _ in items], sum(n for _, n in items)
    return node, 0


def is_decimal(v: Any) -> bool:
    return isinstance(v, Decimal)
