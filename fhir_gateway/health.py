"""``GET /health``: each facility's storage roots, which one serves reads, and why.

For monitoring and the disaster drill: 200 while every facility has a readable root (even when it
failed over to a mirror: ``status`` is then ``degraded``), 503 when a facility has none, when the
state store (PostgreSQL) cannot be reached, or while the instance drains (the file named by
``FHIR_GATEWAY_DRAIN_FILE`` exists; see deploy/haproxy.cfg).
Without credentials only ``{"status": ...}`` is answered (enough for a monitor or a load
balancer); the details need a valid bearer token or a logged-in admin.
Attached through :data:`fhir_gateway.app.EXTENSIONS`.
"""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify, request

blueprint = Blueprint("health", __name__)


def _may_see_details() -> bool:
    """Details (storage paths, error text) only for a valid bearer token (or --no-auth on
    loopback) or a logged-in admin of the viewer (issue 13 L2)."""
    from fhir_gateway.api.errors import FhirError
    auth = current_app.extensions.get("fhir_auth")
    if auth is not None and (auth.store is None or request.headers.get("Authorization")):
        try:
            auth.authenticate(request, None)
            return True
        except FhirError as exc:
            return exc.status == 403  # a valid token bound to one facility
        except Exception:  # noqa: BLE001 - any other refusal: the minimal answer
            return False
    try:
        from flask_login import current_user
        return bool(current_user.is_authenticated and current_user.user.is_admin)
    except Exception:  # noqa: BLE001 - no viewer, or its store is down
        return False


@blueprint.get("/health")
def health():
    gateway = current_app.extensions["gateway"]
    facilities = {}
    worst = "ok"
    for code, svc in sorted(gateway.facilities.items()):
        rs = svc.replicas
        roots = rs.status()
        readable = any(r["healthy"] for r in roots)
        state = "down" if not readable else ("degraded" if rs.failed_over else "ok")
        if state == "down" or (state == "degraded" and worst == "ok"):
            worst = state
        facilities[code] = {"status": state, "active": rs.active_index,
                            "failed_over": rs.failed_over, "failover": rs.failover_header(),
                            "roots": roots}
        receipts = svc.claims.status()
        if receipts is not None:  # "building"/"missing": Claims may be missing from answers
            facilities[code]["receipt_index"] = receipts
        index = svc.index_health()
        if index is not None:  # informational: without an index, search walks the storage
            facilities[code]["patient_index"] = index
    body: dict = {"status": worst, "facilities": facilities}
    state = current_app.extensions.get("state")
    if state is not None:
        body["state"] = state.health()
        if body["state"]["status"] != "ok":  # no logins, tokens or audit without it
            worst = body["status"] = "down"
    config = getattr(gateway, "config", None)
    drain = config.setting("drain_file") if hasattr(config, "setting") else \
        os.environ.get("FHIR_GATEWAY_DRAIN_FILE")
    if drain and os.path.exists(drain):
        # deploy/: the load balancer stops sending new requests; in-flight ones finish
        worst = body["status"] = "draining"
    if not _may_see_details():  # anonymous: up or not, no paths or error text (L2)
        body = {"status": body["status"]} | (
            {"state": {"status": body["state"]["status"]}} if "state" in body else {})
    resp = jsonify(body)
    resp.status_code = 503 if worst in ("down", "draining") else 200
    resp.headers["Cache-Control"] = "no-store"
    return resp


def init_app(app, gateway) -> None:  # noqa: ARG001 - the EXTENSIONS hook signature
    app.register_blueprint(blueprint)
