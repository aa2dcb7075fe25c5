"""Request limits and fairness, as WSGI middleware in front of the whole app (issue 13 M2).

Why in front: the checks must run before Flask parses a form, before authentication and before
any search work, so that an unauthenticated or oversized request costs almost nothing.

* waitress refuses a declared body above ``WAITRESS_MAX_BODY`` from the headers alone, without
  reading it (its own plain 413).  Below that, this middleware refuses a body above
  :data:`MAX_BODY` (413), a URL above :data:`MAX_URL` (414), more than :data:`MAX_PARAMS`
  parameters, a value above :data:`MAX_VALUE` characters or more than :data:`MAX_ALTERNATIVES`
  comma-separated alternatives (400) — as a FHIR OperationOutcome under ``/fhir/``.
* Heavy work (``$everything``, ``$export``, searches with ``_count`` above 100 or a ``:text``
  modifier) runs in a bounded pool: :data:`HEAVY_SLOTS` at a time for the whole server (all
  worker processes: ``flock`` slots in ``{data_dir}/run``) and one per client (bearer token,
  else address).  A heavy request that finds no slot is answered at once
  (503, or 429 for the client's own second one) with ``Retry-After`` instead of holding a
  waitress thread, so plain reads always find a free thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Callable, Iterable
from urllib.parse import parse_qsl, unquote

MAX_URL = 8 * 1024
MAX_PARAMS = 64
MAX_VALUE = 1024
MAX_ALTERNATIVES = 32
MAX_BODY = 128 * 1024
WAITRESS_MAX_BODY = 1024 * 1024
HEAVY_SLOTS = int(os.environ.get("FHIR_GATEWAY_HEAVY_SLOTS", "1"))
HEAVY_PER_CLIENT = 1
HEAVY_COUNT = 100


class Refused(Exception):
    def __init__(self, status: int, reason: str, code: str, retry_after: int | None = None):
        super().__init__(reason)
        self.status, self.reason, self.code, self.retry_after = status, reason, code, retry_after


_TITLES = {400: "Bad Request", 413: "Content Too Large", 414: "URI Too Long",
           429: "Too Many Requests", 503: "Service Unavailable"}


def check_params(pairs: list[tuple[str, str]], where: str = "query") -> None:
    """Parameter count, value length and alternatives, for the query and a ``_search`` form."""
    if len(pairs) > MAX_PARAMS:
        raise Refused(400, f"too many parameters in the {where} ({len(pairs)} > {MAX_PARAMS})",
                      "too-costly")
    for name, value in pairs:
        if len(name) > 128:
            raise Refused(400, "parameter name longer than 128 characters", "too-costly")
        if len(value) > MAX_VALUE:
            raise Refused(400, f"the value of {name[:40]!r} has {len(value)} characters "
                          f"(at most {MAX_VALUE})", "too-costly")
        if value.count(",") + 1 > MAX_ALTERNATIVES:
            raise Refused(400, f"{name[:40]!r} has {value.count(',') + 1} alternatives "
                          f"(at most {MAX_ALTERNATIVES})", "too-costly")


def is_heavy(path: str, pairs: list[tuple[str, str]]) -> bool:
    if "$everything" in path or ("$export" in path and "$export-" not in path):  # status polls, file downloads: light
        return True
    for name, value in pairs:
        if name == "_count" and value.isdigit() and int(value) > HEAVY_COUNT:
            return True
        if name.endswith(":text") or name in ("_content", "_text"):
            return True
    return False


class Pool:
    """Slots for heavy requests shared by every worker process, and per-client counts.

    With ``lock_dir`` a slot is an exclusive, non-blocking ``flock`` on one of ``slots`` files
    (and a client's turn one on a file named by its hash): the limits hold across the pre-forked
    workers, and a crashed worker's locks vanish with its descriptors.  Without ``lock_dir``
    (tests, single process) the same counts are kept in memory."""

    def __init__(self, slots: int = HEAVY_SLOTS, per_client: int = HEAVY_PER_CLIENT,
                 lock_dir: str | os.PathLike[str] | None = None) -> None:
        self.slots = max(1, slots)
        self.per_client = max(1, per_client)
        self.lock_dir = os.fspath(lock_dir) if lock_dir else None
        if self.lock_dir:
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        self.sem = threading.BoundedSemaphore(self.slots)
        self.clients: dict[str, int] = {}
        self.lock = threading.Lock()
        self.held: dict[int, list[int]] = {}  # id(token) -> fds (lock_dir mode)

    def _flock(self, name: str) -> int | None:
        import fcntl
        assert self.lock_dir is not None
        fd = os.open(os.path.join(self.lock_dir, name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            os.close(fd)
            return None

    def enter(self, client: str) -> object:
        """A token for :meth:`leave`; raises :class:`Refused` (429/503) when there is no room."""
        busy = Refused(503, "the server is busy with other heavy requests; retry shortly",
                       "transient", 2)
        mine = Refused(429, "this client already has a heavy request running ($everything, "
                       "export or a large search); retry when it ends", "throttled", 2)
        if self.lock_dir:
            fds: list[int] = []
            for i in range(self.per_client):
                fd = self._flock(f"client-{client.replace(':', '_')}-{i}.lock")
                if fd is not None:
                    fds.append(fd)
                    break
            else:
                raise mine
            for i in range(self.slots):
                fd = self._flock(f"slot-{i}.lock")
                if fd is not None:
                    fds.append(fd)
                    break
            else:
                for fd in fds:
                    os.close(fd)
                raise busy
            token = object()
            with self.lock:
                self.held[id(token)] = fds
            return token
        with self.lock:
            if self.clients.get(client, 0) >= self.per_client:
                raise mine
            if not self.sem.acquire(blocking=False):
                raise busy
            self.clients[client] = self.clients.get(client, 0) + 1
        return client

    def leave(self, token: object) -> None:
        if self.lock_dir:
            with self.lock:
                fds = self.held.pop(id(token), [])
            for fd in fds:
                os.close(fd)  # closing the descriptor releases its flock
            return
        client = str(token)
        with self.lock:
            n = self.clients.get(client, 1) - 1
            if n:
                self.clients[client] = n
            else:
                self.clients.pop(client, None)
            self.sem.release()


class _Release:
    """Wraps the app's response iterable so the slot is freed when the body is sent."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self.body, self.done = body, done

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            self.done()


class RequestLimits:
    def __init__(self, app, pool: Pool | None = None) -> None:
        self.app = app
        self.pool = pool or Pool()

    def __call__(self, environ, start_response):
        try:
            path, pairs = self._check(environ)
        except Refused as exc:
            return self._refuse(environ, start_response, exc)
        if not path.startswith("/fhir/") or not is_heavy(path, pairs):
            return self.app(environ, start_response)
        client = _client(environ)
        try:
            token = self.pool.enter(client)
        except Refused as exc:
            return self._refuse(environ, start_response, exc)
        sized = []

        def started(status, headers, exc_info=None):
            sized.append(any(k.lower() == "content-length" for k, _ in headers))
            return start_response(status, headers, exc_info) if exc_info else \
                start_response(status, headers)
        try:
            body = self.app(environ, started)
            if sized and sized[0]:
                # A buffered response (its length is known): the heavy work is done, so the slot
                # is freed now, not when the server has written the body — else a client that
                # follows ``next`` at once races the release and gets a 429 for its own page.
                try:
                    chunks = list(body)
                finally:
                    close = getattr(body, "close", None)
                    if close:
                        close()
                self.pool.leave(token)
                return chunks
        except BaseException:
            self.pool.leave(token)
            raise
        return _Release(body, lambda: self.pool.leave(token))

    def _check(self, environ) -> tuple[str, list[tuple[str, str]]]:
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        if max(len(raw_path), len(path) + len(query) + 1) > MAX_URL:
            raise Refused(414, f"the URL is longer than {MAX_URL} bytes", "too-costly")
        length = environ.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            raise Refused(400, "bad Content-Length", "invalid") from None
        if size > MAX_BODY:
            raise Refused(413, f"the request body has {size} bytes (at most {MAX_BODY})",
                          "too-costly")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
        except ValueError:
            raise Refused(400, f"too many parameters (at most {MAX_PARAMS})", "too-costly") from None
        if path.startswith("/fhir/"):  # viewer forms cut their fields to 64 characters
            check_params(pairs)
        if path.startswith("/fhir/") and path.endswith("/_search") and size and \
                environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            import io
            data = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(data)
            try:
                form = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True,
                                 max_num_fields=MAX_PARAMS)
            except ValueError:
                raise Refused(400, f"too many parameters (at most {MAX_PARAMS})",
                              "too-costly") from None
            check_params(form, "form")
            pairs = pairs + form
        return unquote(path), pairs

    @staticmethod
    def _refuse(environ, start_response, exc: Refused):
        status = f"{exc.status} {_TITLES.get(exc.status, 'Error')}"
        headers = [("Cache-Control", "no-store")]
        if exc.retry_after:
            headers.append(("Retry-After", str(exc.retry_after)))
        if environ.get("PATH_INFO", "").startswith("/fhir/"):
            body = json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": exc.code, "diagnostics": exc.reason}]},
                ensure_ascii=False).encode("utf-8")
            headers.append(("Content-Type", "application/fhir+json; charset=utf-8"))
        else:
            body = f"{status}: {exc.reason}\n".encode("utf-8")
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


def _client(environ) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth:
        return "t:" + hashlib.sha256(auth.encode("utf-8", "replace")).hexdigest()[:16]
    return "a:" + environ.get("REMOTE_ADDR", "")
