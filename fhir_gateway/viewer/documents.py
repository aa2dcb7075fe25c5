"""Stored documents as safe HTML: CDA (extended storage) and text reports.

Nothing from the document reaches the page as markup.  A CDA is parsed with lxml (no DTD, no
entities, no network) and a *new* tree of a few HTML elements is built from it: section titles,
paragraphs, lists, tables, line breaks; every text is escaped by markupsafe, no attribute is
copied (except numeric col/rowspan), so a ``<script>``, an ``onload=``, a ``javascript:`` link
or an external image in the source becomes plain text or disappears — never active content.
"""

from __future__ import annotations

from markupsafe import Markup, escape

V3 = "{urn:hl7-org:v3}"
# CDA narrative element -> HTML element we emit
_BLOCK = {"paragraph": "p", "list": "ul", "item": "li", "table": "table", "thead": "thead",
          "tbody": "tbody", "tfoot": "tfoot", "tr": "tr", "th": "th", "td": "td",
          "caption": "caption"}
_INLINE = {"content": "span", "sub": "sub", "sup": "sup"}
MAX_DEPTH = 40


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _narrative(el, depth: int = 0) -> str:
    """HTML (escaped) for the children of a CDA narrative element."""
    if depth > MAX_DEPTH:
        return str(escape(" ".join(el.itertext())))
    out = [str(escape(el.text or ""))]
    for child in el:
        name = _local(child.tag)
        if name == "br":
            out.append("<br>")
        elif name == "list":
            tag = "ol" if (child.get("listType") or "").lower() == "ordered" else "ul"
            out.append(f"<{tag}>{_narrative(child, depth + 1)}</{tag}>")
        elif name in _BLOCK:
            tag = _BLOCK[name]
            attrs = ""
            for a in ("colspan", "rowspan"):
                v = child.get(a)
                if v and v.isdigit() and int(v) < 100:
                    attrs += f' {a}="{v}"'
            out.append(f"<{tag}{attrs}>{_narrative(child, depth + 1)}</{tag}>")
        elif name in _INLINE:
            out.append(f"<{_INLINE[name]}>{_narrative(child, depth + 1)}</{_INLINE[name]}>")
        elif name in ("renderMultiMedia", "linkHtml", "footnote", "footnoteRef"):
            out.append(str(escape(" ".join(child.itertext()))))  # no links, no media: text only
        elif callable(getattr(child, "tag", None)):
            pass  # a comment or processing instruction: dropped
        else:
            out.append(_narrative(child, depth + 1))
        out.append(str(escape(child.tail or "")))
    return "".join(out)


def _section(sec, level: int, depth: int = 0) -> str:
    parts = []
    title = sec.find(f"{V3}title")
    if title is not None and "".join(title.itertext()).strip():
        h = min(level, 6)
        parts.append(f"<h{h}>{escape(''.join(title.itertext()).strip())}</h{h}>")
    text = sec.find(f"{V3}text")
    if text is not None:
        parts.append(f'<div class="doc-text">{_narrative(text)}</div>')
    for comp in sec.findall(f"{V3}component"):
        sub = comp.find(f"{V3}section")
        if sub is not None and depth < MAX_DEPTH:
            parts.append(_section(sub, level + 1, depth + 1))
    return f"<section>{''.join(parts)}</section>"


def cda_html(data: bytes) -> tuple[str, Markup]:
    """(document title, safe HTML) of a CDA R2 document; ValueError when it is not one."""
    from lxml import etree
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if _local(root.tag) != "ClinicalDocument":
        raise ValueError(f"not a CDA document (root element {_local(root.tag)!r})")
    title_el = root.find(f"{V3}title")
    title = "".join(title_el.itertext()).strip() if title_el is not None else ""
    body = root.find(f"{V3}component/{V3}structuredBody")
    parts = []
    if body is not None:
        for comp in body.findall(f"{V3}component"):
            sec = comp.find(f"{V3}section")
            if sec is not None:
                parts.append(_section(sec, 2))
    else:
        nb = root.find(f"{V3}component/{V3}nonXMLBody/{V3}text")
        if nb is not None:
            parts.append(f'<pre class="doc-plain">{escape("".join(nb.itertext()))}</pre>')
    return title, Markup("".join(parts))


def text_html(data: bytes, encodings=("utf-8", "iso2022_jp", "cp932")) -> Markup:
    """A text report as an escaped, line-preserving block."""
    for enc in encodings:
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("utf-8", "replace")
    return Markup(f'<pre class="doc-plain">{escape(text.replace(chr(13), chr(10)))}</pre>')


INLINE_TYPES = {"application/pdf": "pdf", "image/png": "image", "image/jpeg": "image",
                "image/gif": "image"}


def sniff(name: str, data: bytes) -> str:
    """The content type of a stored file by its bytes (never trusted from its name alone)."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    head = data[:200].lstrip()
    if head.startswith(b"<?xml") or head.startswith(b"<"):
        return "application/xml"
    if name.lower().endswith((".hl7", ".txt", ".er7")) or data.startswith(b"MSH|"):
        return "text/plain"
    return "application/octet-stream"
