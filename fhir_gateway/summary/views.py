"""Public SMART Health Link endpoints: ``POST /shl/<id>`` (manifest) and ``GET /shl/<id>/file``.

No login and no bearer token: possession of the link (and its passcode, when set) is the
credential, as the SHL IG defines.  Any origin may call them (SHL viewers are browser apps);
nothing here reveals more than the ciphertext."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, request

from .shl import LinkStore, ShlError

blueprint = Blueprint("shl", __name__, url_prefix="/shl")
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_BODY = 4096


def store() -> LinkStore:
    ext = current_app.extensions
    if "shl_store" not in ext:
        ext["shl_store"] = LinkStore(current_app.config["FHIR_CONFIG"].data_dir)
    return ext["shl_store"]


@blueprint.after_request
def _cors(resp: Response) -> Response:
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@blueprint.errorhandler(ShlError)
def _refused(exc: ShlError):
    body: dict = {"error": str(exc)}
    if exc.remaining is not None:
        body["remainingAttempts"] = exc.remaining
    return jsonify(body), exc.status


def _check_id(link_id: str) -> None:
    if not _ID.match(link_id):
        raise ShlError(404, "no active link")


@blueprint.route("/<link_id>", methods=["OPTIONS"])
@blueprint.route("/<link_id>/file", methods=["OPTIONS"])
def _preflight(link_id: str):
    return Response(status=204)


@blueprint.post("/<link_id>")
def manifest(link_id: str):
    """The manifest: where the (encrypted) summary can be fetched, after the passcode check."""
    _check_id(link_id)
    if (request.content_length or 0) > MAX_BODY:
        raise ShlError(413, "request body too large")
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise ShlError(400, "a JSON object with 'recipient' is required")
    recipient, passcode = body.get("recipient"), body.get("passcode")
    if not isinstance(recipient, str) or (passcode is not None and not isinstance(passcode, str)):
        raise ShlError(400, "'recipient' (and 'passcode') must be strings")
    links = store()
    links.manifest_access(link_id, passcode, recipient.strip())
    entry: dict = {"contentType": "application/fhir+json"}
    limit = body.get("embeddedLengthMax")
    jwe_bytes = links.embedded(link_id)
    if isinstance(limit, int) and not isinstance(limit, bool) and len(jwe_bytes) <= limit:
        entry["embedded"] = jwe_bytes.decode("ascii")
    else:
        ticket = links.location_ticket(link_id)
        entry["location"] = f"{request.host_url.rstrip('/')}/shl/{link_id}/file?t={ticket}"
    return jsonify({"files": [entry]})


@blueprint.get("/<link_id>/file")
def file(link_id: str):
    _check_id(link_id)
    data = store().file_for(link_id, request.args.get("t", ""))
    return Response(data, content_type="application/jose")
