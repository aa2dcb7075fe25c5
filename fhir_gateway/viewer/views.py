"""Routes of the viewer.  Every patient page goes: login -> facility allowed (disaster access
connected, or the hospital admin's own facility) -> 合言葉 given for this facility -> page.
Every login, search, patient view, memo and switch is written to the audit trail."""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from datetime import datetime, timedelta, timezone

from flask import (Blueprint, abort, current_app, g, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_required, login_user, logout_user
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from ..accounts import AccountError
from .. import textsafe
from ..memos import MemoError, MemoRefused, MemoStorageError
from . import charts, models
from . import fhirview as fv
from . import search as psearch
from .i18n import term as _term, translate
from .security import add_headers, check_csrf, csrf_token
from .state import LoginUser

bp = Blueprint("viewer", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/viewer-static")
JST = timezone(timedelta(hours=9))
_PID = re.compile(r"^[0-9A-Za-z\-]{1,64}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_PASSPHRASE_FAILURES = 5
LAB_PAGE = 10          # dates per page of the cumulative lab table (newest first)
LAB_PRINT_FIT = 7      # dates that fit an A4 portrait page next to the test names


def state():
    return current_app.extensions["fhir_gateway_viewer"]


def lang() -> str:
    return session.get("lang", "ja")


def t(key: str) -> str:
    return translate(key, lang())


def _who() -> dict:
    u = current_user.user if current_user.is_authenticated else None
    return {"username": u.username if u else "", "person": session.get("person", ""),
            "staff_no": session.get("staff_no", ""),
            "session": getattr(session, "sid_short", ""), "ip": request.remote_addr or ""}


def audit(action: str, **kw) -> None:
    state().accounts.audit(action, **(_who() | kw))


# --- request hooks ---------------------------------------------------------------------------

@bp.before_request
def _before():
    check_csrf()
    g.lang = lang()


@bp.after_request
def _after(response):
    is_static = request.endpoint == "viewer.static"
    if is_static:
        response.headers["Cache-Control"] = "private, max-age=3600"
    return add_headers(response, patient_data=not is_static)


@bp.app_template_global("t")
def _t(key: str) -> str:
    return t(key)


@bp.app_template_global("tf")
def _tf(key: str, **kw) -> str:
    """A message with {placeholders} filled."""
    return t(key).format(**kw)


@bp.app_template_global("term")
def _term_global(key: str) -> str:
    return _term(key, lang())


@bp.app_template_global("csrf_token")
def _csrf() -> str:
    return csrf_token()


@bp.app_template_global("now_text")
def _now_text() -> str:
    return datetime.now(JST).strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("sex")
def _sex(code: str) -> str:
    return t({"male": "male", "female": "female", "other": "gender-other"}.get(code or "", "unknown"))


@bp.app_template_filter("dt")
def _dt(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, JST).strftime("%Y-%m-%d %H:%M")


@bp.errorhandler(sqlite3.DatabaseError)
def _store_broken(err):
    """The account store broke while serving: fail closed with a 503 page, never a 500."""
    current_app.logger.error("account store error: %s", err)
    resp = current_app.make_response((render_template(
        "viewer/message.html", message=t("viewer_closed"), back=url_for("viewer.login")), 503))
    return add_headers(resp)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    """Viewer pages answer errors with an HTML page (the API's handler answers FHIR JSON)."""
    code = err.code or 500
    if getattr(err, "description", "") == "csrf":
        msg = t("csrf")
    elif code == 403:
        msg = t("forbidden")
    elif code == 404:
        msg = t("patient_not_found") if "/p/" in request.path else "404 Not Found"
    else:
        msg = f"{code} {err.name}"
    back = url_for("viewer.home") if current_user.is_authenticated else url_for("viewer.login")
    return add_headers(current_app.make_response(
        (render_template("viewer/message.html", message=msg, back=back), code)))


# --- login / logout / language -----------------------------------------------------------------

def _safe_next(value: str | None, prefix: str = "/f/") -> str | None:
    """A local path to return to (never another host, never a scheme)."""
    if not value or not value.startswith(prefix) or value.startswith("//") or "\\" in value:
        return None
    if any(c in value for c in "\r\n") or len(value) > 500:
        return None
    return value


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = ""
    nxt = _safe_next(request.args.get("next"))
    if request.method == "GET" and request.args.get("expired"):
        error = t("session_expired")
    if request.method == "POST":
        f = request.form
        username = f.get("username", "").strip()
        person = textsafe.strip(f.get("person", "")).strip()[:80]  # never stored with \x01
        staff_no = textsafe.strip(f.get("staff_no", "")).strip()[:40]
        user, why = state().accounts.authenticate(username, f.get("password", ""),
                                                  request.remote_addr or "", f.get("otp", ""))
        if user and person and staff_no:
            keep_lang = session.get("lang")
            session.clear()
            session.regenerate()  # new session id at login (ASVS 3.2.1)
            if keep_lang:
                session["lang"] = keep_lang
            session["person"], session["staff_no"] = person, staff_no
            session["unlocked"] = {}
            session["login_at"] = time.time()
            login_user(LoginUser(user))
            audit("login", username=user.username, person=person, staff_no=staff_no)
            return redirect(nxt or url_for("viewer.home"))
        reason = why or "missing-name-or-staff-number"
        state().accounts.audit("login-failed", username=username[:64], person=person,
                               staff_no=staff_no, ip=request.remote_addr or "",
                               detail={"reason": reason}, outcome="failed")
        error = t("login_failed")
    return render_template("viewer/login.html", error=error, next=nxt), (401 if error and request.method == "POST" else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit("logout")
    logout_user()
    session.clear()  # deletes the server-side row: the cookie is now worthless
    return redirect(url_for("viewer.login"))


_SAFE_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$")


def safe_next(target: str) -> str | None:
    """``target`` when it is a plain path on this site, else None.

    Browsers drop tabs and newlines from URLs, so ``/\t/evil.example`` is ``//evil.example`` to
    them (issue 13 L2): anything but printable ASCII of a path is refused, and so are ``//`` and
    ``/\\`` at the start (a CR/LF never reaches a header)."""
    return target if target and len(target) <= 2000 and _SAFE_NEXT.match(target) else None


@bp.route("/lang", methods=["POST"])
def set_lang():
    session["lang"] = "en" if lang() == "ja" else "ja"
    return redirect(safe_next(request.form.get("next", "")) or url_for("viewer.home"))


# --- facilities ----------------------------------------------------------------------------------

def _facility_rows():
    st = state()
    user = current_user.user
    rows = []
    for code, fac in st.config.facilities.items():
        acc = st.accounts.access(code)
        rows.append({"code": code, "name": fac.name, "access": acc,
                     "can_read": st.accounts.can_read(user, code),
                     "admin": user.administers(code),
                     "unlocked": session.get("unlocked", {}).get(code, [None])[0] is not None})
    return rows


@bp.route("/")
@login_required
def home():
    return render_template("viewer/facilities.html", rows=_facility_rows())


def facility_required(view):
    """Facility exists, this account may read it, and the 合言葉 was given (current version)."""
    @functools.wraps(view)
    @login_required
    def wrapper(code: str, *args, **kwargs):
        st = state()
        fac = st.config.facilities.get(code)
        svc = st.gateway.facility(code) if fac else None
        if fac is None or svc is None:
            abort(404)
        user = current_user.user
        if not st.accounts.can_read(user, code):
            audit("access-denied", facility=code, outcome="denied",
                  detail={"path": request.path[:200]})
            return render_template("viewer/message.html", message=t("not_connected"),
                                   back=url_for("viewer.home")), 403
        info = st.accounts.passphrase_info(code)
        unlocked = session.get("unlocked", {})
        if not info or unlocked.get(code) != [info["version"], _access_epoch(code)]:
            back = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("viewer.unlock", code=code, next=_safe_next(back, f"/f/{code}/")))
        g.code, g.fac, g.svc = code, fac, svc
        g.admin_check = not st.accounts.access(code).enabled
        try:
            svc.replicas.active()  # probe now, so the banner is right on this very page
            g.failed_over = bool(svc.replicas.failed_over)
        except Exception:
            g.failed_over = False
        return view(code, *args, **kwargs)
    return wrapper


def _access_epoch(code: str) -> float:
    """When the facility's switch last changed: an unlock is bound to it, so 切断 ends every
    unlock and a later 接続 needs the 合言葉 again (issue 13 L2)."""
    return state().accounts.access(code).changed_at or 0.0


@bp.route("/f/<code>/unlock", methods=["GET", "POST"])
@login_required
def unlock(code: str):
    st = state()
    fac = st.config.facilities.get(code)
    if fac is None:
        abort(404)
    if not st.accounts.can_read(current_user.user, code):
        return render_template("viewer/message.html", message=t("not_connected"),
                               back=url_for("viewer.home")), 403
    error = ""
    if st.accounts.passphrase_info(code) is None:
        error = t("passphrase_unset")
    elif request.method == "POST":
        version, wait = st.accounts.try_passphrase(current_user.user.username, code,
                                                   request.form.get("passphrase", ""),
                                                   request.remote_addr or "")
        if wait:
            audit("passphrase-blocked", facility=code, outcome="denied",
                  detail={"retry_after": int(wait) + 1})
            error = t("passphrase_wait").format(seconds=int(wait) + 1)
            resp = current_app.make_response(render_template(
                "viewer/unlock.html", fac=fac, code=code, error=error))
            resp.status_code = 429
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        if version is not None:
            unlocked = dict(session.get("unlocked", {}))
            unlocked[code] = [version, _access_epoch(code)]
            session["unlocked"] = unlocked
            session["pp_fail"] = 0
            audit("passphrase-ok", facility=code)
            nxt = _safe_next(request.args.get("next"), f"/f/{code}/")
            return redirect(nxt or url_for("viewer.patients", code=code))
        fails = session.get("pp_fail", 0) + 1
        session["pp_fail"] = fails
        audit("passphrase-failed", facility=code, outcome="failed", detail={"count": fails})
        if fails >= MAX_PASSPHRASE_FAILURES:
            audit("logout-forced", facility=code, detail={"reason": "passphrase failures"})
            logout_user()
            session.clear()
            return redirect(url_for("viewer.login"))
        error = t("passphrase_wrong")
    return render_template("viewer/unlock.html", fac=fac, code=code, error=error)


# --- administration ---------------------------------------------------------------------------

REAUTH_SECONDS = 5 * 60


def _reauthenticate(user) -> None:
    """接続/切断 need a password given in the last five minutes (at login or in the form):
    a session left open on a ward PC cannot open a hospital's data to everyone (item 4)."""
    pw = request.form.get("password", "")
    if pw:
        ok, why = state().accounts.authenticate(user.username, pw, request.remote_addr or "",
                                                request.form.get("otp", ""))
        audit("reauth", outcome="ok" if ok else "failed", detail={"reason": why})
        if not ok:
            raise AccountError(t("reauth_failed"))
        session["auth_at"] = time.time()
        return
    if time.time() - float(session.get("auth_at") or session.get("login_at") or 0) > REAUTH_SECONDS:
        raise AccountError(t("reauth_needed"))

def _parse_expiry(form) -> float | None:
    hours = form.get("hours", "").strip()
    if hours and hours != "0":
        try:
            h = float(hours)
        except ValueError:
            raise AccountError("bad expiry") from None
        if not 0 < h <= 24 * 60:
            raise AccountError("bad expiry")
        return time.time() + h * 3600
    until = form.get("until", "").strip()
    if until:
        try:
            return datetime.fromisoformat(until).replace(tzinfo=JST).timestamp()
        except ValueError:
            raise AccountError("bad expiry") from None
    return None


@bp.route("/admin")
@login_required
def admin_index():
    user = current_user.user
    if not user.is_admin:
        abort(403)
    return render_template("viewer/admin_index.html",
                           rows=[r for r in _facility_rows() if r["admin"]])


@bp.route("/admin/<code>", methods=["GET", "POST"])
@login_required
def admin(code: str):
    st = state()
    fac = st.config.facilities.get(code)
    user = current_user.user
    if fac is None:
        abort(404)
    if not user.administers(code):
        audit("admin-denied", facility=code, outcome="denied")
        abort(403)
    message = error = ""
    if request.method == "POST":
        op = request.form.get("op", "")
        try:
            if op in ("connect", "disconnect"):
                _reauthenticate(user)
                expires = _parse_expiry(request.form) if op == "connect" else None
                st.accounts.switch_access(code, op == "connect",
                                          textsafe.strip(request.form.get("reason", "")),
                                          user.username, session.get("person", ""),
                                          session.get("staff_no", ""), expires)
                audit(f"access-{op}", facility=code,
                      detail={"reason": request.form.get("reason", "")[:200],
                              "expires": expires or ""})
                message = t("changed")
            elif op == "passphrase":
                p1, p2 = request.form.get("new", ""), request.form.get("again", "")
                if p1 != p2:
                    raise AccountError(t("mismatch"))
                v = st.accounts.set_passphrase(code, p1, user.username)
                audit("passphrase-rotate", facility=code, detail={"version": v})
                message = t("changed")
            else:
                abort(400)
        except AccountError as exc:
            error = str(exc)
    return render_template("viewer/admin.html", fac=fac, code=code,
                           access=st.accounts.access(code),
                           passphrase=st.accounts.passphrase_info(code),
                           log=st.accounts.access_log(code, 100),
                           audit_rows=st.accounts.audit_rows(100, code),
                           message=message, error=error)


# --- patient search ---------------------------------------------------------------------------

@bp.route("/f/<code>/", methods=["GET", "POST"])
@facility_required
def patients(code: str):
    hits = None
    truncated = False
    form = {k: request.form.get(k, "").strip()[:64] for k in
            ("patient_id", "name", "kana", "birthdate", "gender")}
    error = ""
    id_hint = None
    if request.method == "POST":
        if not any(form.values()):
            error = t("need_criteria")
        else:
            if form["patient_id"]:
                found, tried = psearch.resolve_id(g.svc, form["patient_id"])
                id_hint = {"typed": form["patient_id"], "found": found, "tried": tried}
            hits, truncated = psearch.search(g.svc, models.today_jst(), **form)
            audit("patient-search", facility=code,
                  detail={"fields": sorted(k for k, v in form.items() if v),
                          "results": len(hits)})
    return render_template("viewer/search.html", form=form, hits=hits, truncated=truncated,
                           error=error, id_hint=id_hint)


# --- patient pages ------------------------------------------------------------------------------

BANNER: set[str] = set()  # the banner of a tab comes from the patient-level folder (below)
# what each page maps (issue 11 item 10: a cold chart maps what the page shows, not the chart)
SCOPES: dict[str, frozenset | str | None] = {
    "summary": "summary", "continue": "summary",
    "conditions": frozenset(BANNER | {"Condition"}),
    # the patient-level allergy records (ADT-61 IAM, ADT-00 AL1); AL1 repeated in orders are
    # snapshots of them and would cost every order file of the chart
    "allergies": "patient-level",
    "memos": frozenset(), "dates": "summary",
    "prescriptions": frozenset(BANNER | {"MedicationRequest", "MedicationDispense"}),
    "injections": frozenset(BANNER | {"MedicationRequest"}),
    "administrations": frozenset(BANNER | {"MedicationAdministration", "Immunization"}),
    "lab-orders": frozenset(BANNER | {"ServiceRequest", "Specimen"}),
    "lab-results": frozenset(BANNER | {"Observation", "DiagnosticReport"}),
    "labs": frozenset(BANNER | {"Observation", "DiagnosticReport"}),
    "vitals": frozenset(BANNER | {"Observation"}),
    "documents": frozenset(BANNER | {"DocumentReference", "Composition", "DiagnosticReport"}),
    "document": frozenset(BANNER | {"DocumentReference", "Composition", "DiagnosticReport"}),
    "document-file": frozenset(BANNER | {"DocumentReference", "Composition", "DiagnosticReport"}),
    "receipts": frozenset(BANNER | {"Claim", "Coverage"}),
    "drugs": frozenset(BANNER | {"MedicationRequest", "MedicationAdministration",
                                 "MedicationDispense", "Immunization"}),
}


def _load_patient(pid: str, view: str):
    if not _PID.match(pid):
        abort(404)
    from ..services import NotFound, StorageUnavailable
    today = models.today_jst()
    scope = SCOPES.get(view)
    if view == "category":
        scope = SCOPES.get((request.view_args or {}).get("cat", ""))
    try:
        data, pview = state().patient_data(g.svc, pid, today, scope)
    except NotFound:
        abort(404)
    except StorageUnavailable:
        return None, render_template("viewer/message.html", message=t("storage_unavailable"),
                                     back=url_for("viewer.patients", code=g.code)), 503
    banner_res = data.resources
    if isinstance(scope, frozenset) or scope == "patient-level":  # a tab: Patient and allergies from the patient-level folder
        banner_res = list(data.resources) + state().banner_resources(g.svc, pid)
    patient = next((r for r in banner_res if r.get("resourceType") == "Patient"), None)
    if patient is None and not data.resources and not data.problems:
        abort(404)  # a folder whose files all failed to read still opens, with the reasons
    g.pid = pid
    g.today = today
    g.pv = pview
    g.banner = models.banner(patient, banner_res, pid, today)
    audit("patient-view", facility=g.code, patient=pid,
          detail={"view": view, "admin_check": g.admin_check})
    return data, None, None


def patient_page(view_name: str):
    def deco(view):
        @functools.wraps(view)
        @facility_required
        def wrapper(code: str, pid: str, *args, **kwargs):
            data, resp, status = _load_patient(pid, view_name)
            if data is None:
                return resp, status
            g.view = view_name
            return view(code, pid, data, *args, **kwargs)
        return wrapper
    return deco


@bp.route("/f/<code>/p/<pid>/")
@patient_page("summary")
def patient(code, pid, data):
    pv = g.pv
    quality = models.data_quality(data.resources, data.problems, getattr(data, "files", None))
    partial = getattr(data, "days_total", 0) > getattr(data, "days_mapped", 0)
    conds = pv.active_rows("conditions")
    recent_day, recent = pv.latest_labs()
    return render_template("viewer/patient.html", quality=quality, meds=pv.med_summary(), conds=conds,
                           recent=recent, recent_day=recent_day,
                           counts=None if partial else pv.counts(), partial=partial,
                           allergies=pv.rows("allergies"))


@bp.route("/f/<code>/p/<pid>/continue")
@patient_page("continue")
def continue_list(code, pid, data):
    """継続処方の参考: what was running at the last data date, ready to print and re-issue."""
    return render_template("viewer/continue.html", meds=g.pv.med_summary())


VITAL_CHARTS = (("bp", ("sys", "dia"), "mmHg"), ("pulse", ("pulse",), "/分"),
                ("temp", ("temp",), "℃"), ("spo2", ("spo2",), "%"), ("rr", ("rr",), "/分"),
                ("height", ("height",), "cm"), ("weight", ("weight",), "kg"), ("bmi", ("bmi",), "kg/m2"))
VITAL_PAGE = 30


@bp.route("/f/<code>/p/<pid>/vitals")
@patient_page("vitals")
def vitals(code, pid, data):
    """Vital signs: a table (newest first, paged) and trend charts, BP systolic/diastolic together."""
    rows, series = models.vitals(g.pv.by_cat["vitals"])
    try:
        start = max(0, int(request.args.get("start", "0")))
    except ValueError:
        start = 0
    svgs = []
    for key, kinds, unit in VITAL_CHARTS:
        svg = charts.series_svg(t("vital_" + key), unit,
                                [(t("vital_" + k), series.get(k, [])) for k in kinds], pid, lang())
        if svg:
            svgs.append((key, svg))
    return render_template("viewer/vitals.html", rows=rows[start:start + VITAL_PAGE], total=len(rows),
                           start=start, size=VITAL_PAGE, svgs=svgs)


DOC_PAGE = 50
CAT_PAGE = 200


def _documents(resources) -> list[dict]:
    """Readable documents of the chart, newest first: extended-storage and derived
    DocumentReferences (memos have their own tab), Compositions and reports with text."""
    out = []
    for r in resources:
        rt = r.get("resourceType")
        if models.is_memo(r):
            continue
        if rt == "DocumentReference" or rt == "Composition" or (
                rt == "DiagnosticReport" and (r.get("conclusion") or r.get("presentedForm"))):
            kind = fv.cc_text(r.get("type")) or fv.cc_text(r.get("code")) or t("rtype_" + rt)
            out.append({"id": r.get("id", ""), "type": rt, "kind": kind, "when": fv.short_dt(fv.when(r)),
                        "files": [(c.get("attachment") or {}).get("title", "") for c in r.get("content") or []]})
    out.sort(key=lambda d: d["when"], reverse=True)
    return out


@bp.route("/f/<code>/p/<pid>/documents")
@patient_page("documents")
def documents(code, pid, data):
    docs = _documents(g.pv.resources)
    try:
        start = max(0, int(request.args.get("start", "0")))
    except ValueError:
        start = 0
    return render_template("viewer/documents.html", docs=docs[start:start + DOC_PAGE],
                           total=len(docs), start=start, size=DOC_PAGE)


def _patient_resource(rid: str) -> dict:
    """A resource of the open chart (so a document id of another patient is a 404)."""
    for r in g.pv.resources:
        if r.get("id") == rid and r.get("resourceType") in ("DocumentReference", "Composition",
                                                             "DiagnosticReport"):
            return r
    abort(404)


@bp.route("/f/<code>/p/<pid>/doc/<rid>")
@patient_page("document")
def document(code, pid, data, rid):
    """One document as safe HTML (CDA and text), PDFs and images inline."""
    from . import documents as docs
    from ..services import NotFound as _NF
    res = _patient_resource(rid)
    title, body, error, files = fv.cc_text(res.get("type")) or fv.cc_text(res.get("code")), None, "", []
    inline = []
    if ".EXT." in rid:
        try:
            name, files, raw = g.svc.extended.content(rid)
        except _NF:
            abort(404)
        kind = docs.sniff(name, raw)
        try:
            if kind == "application/xml":
                title2, body = docs.cda_html(raw)
                title = title2 or title
            elif kind == "text/plain":
                body = docs.text_html(raw)
        except ValueError as exc:
            error = str(exc)
            body = docs.text_html(raw)
        if kind in docs.INLINE_TYPES:
            inline.append((name, docs.INLINE_TYPES[kind]))
        for other in files:
            if other != name and other.lower().endswith((".pdf", ".png", ".jpg", ".jpeg", ".gif")):
                inline.append((other, "pdf" if other.lower().endswith(".pdf") else "image"))
    else:
        import base64
        texts = [res.get("conclusion") or ""]
        for a in (res.get("presentedForm") or []) + [c.get("attachment") or {} for c in res.get("content") or []]:
            if a.get("data"):
                try:
                    texts.append(base64.b64decode(a["data"]).decode("utf-8", "replace"))
                except ValueError:
                    pass
        body = docs.text_html("\n\n".join(x for x in texts if x).encode("utf-8"))
    return render_template("viewer/document.html", res=res, rid=rid, title=title, body=body,
                           error=error, inline=inline, when=fv.short_dt(fv.when(res)))


@bp.route("/f/<code>/p/<pid>/doc/<rid>/file/<name>")
@patient_page("document-file")
def document_file(code, pid, data, rid, name):
    """A stored PDF or image, served only as that type, never as HTML, framable only by the viewer."""
    from . import documents as docs
    from ..services import NotFound as _NF
    _patient_resource(rid)
    try:
        fname, _, raw = g.svc.extended.content(rid, name)
    except _NF:
        abort(404)
    kind = docs.sniff(fname, raw)
    if kind not in docs.INLINE_TYPES:
        abort(404)
    resp = current_app.make_response(raw)
    resp.headers["Content-Type"] = kind
    resp.headers["Content-Disposition"] = "inline"
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    resp.headers["Content-Security-Policy"] = ("default-src 'none'; frame-ancestors 'self'"
                                               + ("" if kind == "application/pdf" else "; sandbox"))
    return resp


@bp.route("/f/<code>/p/<pid>/c/<cat>")
@patient_page("category")
def category(code, pid, data, cat):
    if cat not in models.CATEGORIES:
        abort(404)
    if cat == "vitals":
        return redirect(url_for("viewer.vitals", code=code, pid=pid))
    rows = g.pv.rows(cat)
    try:
        start = max(0, int(request.args.get("start", "0")))
    except ValueError:
        start = 0
    # newest first, a page at a time: a heavy chart's 5,000 lab rows are not one page
    paged = rows if cat in ("prescriptions", "injections") else rows[start:start + CAT_PAGE]
    past = None
    if cat in ("prescriptions", "injections"):
        past_all = [r for r in rows if r.status != "active"]
        past = past_all[start:start + CAT_PAGE]
        total = len(past_all)
    else:
        total = len(rows)
    return render_template("viewer/category.html", cat=cat, rows=paged, past=past, total=total,
                           all_count=len(rows), start=start, size=CAT_PAGE)


@bp.route("/f/<code>/p/<pid>/dates")
@patient_page("dates")
def dates(code, pid, data):
    quality = models.data_quality(data.resources, data.problems, getattr(data, "files", None))
    per_day: dict[str, int] = {}  # files per date folder (a listing: the dates page maps nothing)
    for day, _dtype, _ts in models.file_facts(getattr(data, "files", None)):
        if len(day) == 8:
            iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
            per_day[iso] = per_day.get(iso, 0) + 1
    days = sorted(set(quality.dates) | set(per_day), reverse=True)
    return render_template("viewer/dates.html", days=days, per_day=per_day)


@bp.route("/f/<code>/p/<pid>/d/<day>")
@patient_page("date")
def on_date(code, pid, data, day):
    if not _DAY.match(day):
        abort(404)
    groups = models.on_date(g.pv, day, g.today)
    return render_template("viewer/date.html", day=day, groups=groups)


@bp.route("/f/<code>/p/<pid>/drugs")
@patient_page("drugs")
def drugs(code, pid, data):
    q = request.args.get("q", "").strip()[:64]
    hits = models.drug_search(g.pv, q, g.today) if q else None
    return render_template("viewer/drugs.html", q=q, hits=hits, short=bool(q) and hits is None)


@bp.route("/f/<code>/p/<pid>/labs")
@patient_page("labs")
def labs(code, pid, data):
    table = models.lab_table(g.pv.by_cat["lab-results"])
    try:
        start = int(request.args.get("start", "0"))
    except ValueError:
        start = 0
    size = 3 if request.args.get("n") == "3" else LAB_PAGE
    page = models.lab_page(table, start, size)
    svgs = {t.key: charts.trend_svg(t, pid, lang()) for t in table.tests if len(t.numeric) >= 1}
    return render_template("viewer/labs.html", table=table, page=page, svgs=svgs,
                           print_fit=LAB_PRINT_FIT)


@bp.route("/f/<code>/p/<pid>/receipts")
@patient_page("receipts")
def receipts(code, pid, data):
    q = request.args.get("q", "").strip()[:64]
    return render_template("viewer/receipts.html", q=q, months=models.receipts(data.resources, q))


@bp.route("/f/<code>/p/<pid>/memos", methods=["GET", "POST"])
@patient_page("memos")
def memos(code, pid, data):
    """Append-only memos.  A refused memo (empty, a forbidden character, not yours to mark as
    誤記, the disk cannot take it) re-shows the form with the typed text and the reason; only a
    memo that is durably in the journal is audited as ok (issue 13 H2)."""
    st = state()
    user = current_user.user
    admin = user.administers(code)
    staff_no = session.get("staff_no", "")
    error, status, text = "", 200, ""
    correcting = request.args.get("correct", "")
    if request.method == "POST":
        text = request.form.get("text", "")
        correcting = request.form.get("corrects") or ""
        try:
            memo = st.memos.append(code, pid, text, author=user.username,
                                   person=session.get("person", ""), staff_no=staff_no,
                                   corrects=correcting or None, admin=admin)
        except MemoError as exc:
            error = str(exc)
            status = 403 if isinstance(exc, MemoRefused) else \
                503 if isinstance(exc, MemoStorageError) else 400
            audit("memo-create", facility=code, patient=pid, outcome="failed",
                  detail={"reason": type(exc).__name__, "corrects": correcting[:40]})
        else:
            audit("memo-create", facility=code, patient=pid,
                  detail={"memo": memo.id, "corrects": memo.corrects or ""})
            return redirect(url_for("viewer.memos", code=code, pid=pid))
    rows = st.memos.for_patient(code, pid)
    target = next((m for m in rows if m.id == correcting), None)
    if correcting and (target is None or not target.may_be_corrected_by(user.username, staff_no,
                                                                         admin)):
        correcting = ""  # no correction form for someone else's memo: add a new memo instead
    return render_template("viewer/memos.html", memos=rows, error=error, correcting=correcting,
                           text=text, journal_warning=st.memos.warning(code),
                           may_correct=lambda m: m.may_be_corrected_by(user.username, staff_no,
                                                                       admin)), status


@bp.route("/f/<code>/p/<pid>/printed", methods=["POST"])
@facility_required
def printed(code, pid):
    """Called by viewer.js on ``beforeprint``: every print is audited (BALP Read/View/Print)."""
    if not _PID.match(pid):
        abort(404)
    audit("patient-print", facility=code, patient=pid,
          detail={"view": request.form.get("view", "")[:40]})
    return "", 204


@bp.app_template_global("svg")
def _svg(markup) -> Markup:
    return Markup(markup)
