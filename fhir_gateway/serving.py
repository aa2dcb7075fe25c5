"""Serving with waitress on several processes that share one listening socket.

waitress is one process, so CPU-bound mapping would share one GIL.  The parent creates and binds
the socket, then forks ``workers`` children; each builds its own app (no threads or locks cross
the fork) and runs ``waitress.serve(app, sockets=[sock])``.  The kernel hands each new connection
to one of the children.  The parent restarts a child that dies and forwards SIGTERM/SIGINT."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the supervising parent never imports the app's stack (keeps its RSS small)
    from flask import Flask

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = host.strip("[]")
    if host == "localhost":
        addr, family = "127.0.0.1", socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _serve_child(make_app: Callable[[], "Flask"], sock: socket.socket, threads: int) -> None:
    import waitress
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" noise under load
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .limits import MAX_URL, WAITRESS_MAX_BODY
    # a thread serving a short read gets the GIL back from a heavy one within 1 ms, not 5 ms
    sys.setswitchinterval(float(os.environ.get("FHIR_GATEWAY_SWITCH_INTERVAL", "0.001")))
    app = make_app()
    # bodies above the limit are refused from their Content-Length, never read (issue 13 M2)
    waitress.serve(app, sockets=[sock], threads=threads, ident="fhir-gateway",
                   connection_limit=1000, channel_timeout=60, _quiet=True,
                   max_request_body_size=WAITRESS_MAX_BODY,
                   max_request_header_size=MAX_URL + 32 * 1024,
                   # waitress drops X-Forwarded-For/Forwarded unless told; with trusted_proxies
                   # the app reads them, for trusted peers only (fhir_gateway/proxies.py)
                   clear_untrusted_proxy_headers=not getattr(app, "config", {}).get(
                       "FHIR_TRUSTED_PROXIES"))


def check_app(make_app: Callable[[], "Flask"]) -> bool:
    """Build the app once in a throw-away child so a broken config fails fast, before any worker
    starts, without loading the whole app into the long-lived parent."""
    if not hasattr(os, "fork"):
        make_app()
        return True
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            make_app()
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the operator, then exit 1
            print(f"fhir-gateway serve: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def serve(make_app: Callable[[], "Flask"], host: str, port: int, threads: int = 4,
          workers: int = 1, ready: Callable[[str], None] | None = None) -> int:
    os.umask(0o077)  # every file the server writes (indexes, memos, caches) is owner-only (L2)
    try:
        sock = bind(host, port)
    except OSError as exc:  # port in use, address not on this machine, no permission
        print(f"fhir-gateway serve: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    actual = sock.getsockname()[1]
    url = f"http://{host}:{actual}"
    os.environ["FHIR_GATEWAY_BIND_URL"] = url  # links for an untrusted Host: (hosts.py)
    if ready:
        ready(url)
    if workers <= 1 or not hasattr(os, "fork"):
        _serve_child(make_app, sock, threads)
        return 0
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                _serve_child(make_app, sock, threads)
            finally:
                os._exit(0)
        children[pid] = slot

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
        spawn(slot)
    restarts: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        dead = children.pop(pid, None)
        if dead is None or stopping:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 10 * workers:
            print("fhir-gateway: workers keep dying; giving up", file=sys.stderr)
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker %d exited (%s); restarting", pid, status)
        spawn(dead)
    sock.close()
    return 0
