"""Per-app viewer state: config, services, accounts, memos, and a short patient cache."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from flask_login import UserMixin

from ..accounts import User


class LoginUser(UserMixin):
    def __init__(self, user: User) -> None:
        self.user = user

    def get_id(self) -> str:
        return self.user.username

    @property
    def is_active(self) -> bool:
        return not self.user.disabled


@dataclass
class ViewerState:
    config: object
    gateway: object
    accounts: object
    memos: object
    cache_seconds: float = 20.0  # config setting viewer_cache_seconds
    cache_size: int = 24
    _cache: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def banner_resources(self, svc, pid: str) -> list[dict]:
        """Patient and allergies of the patient-level folder (cached like a chart)."""
        now = time.monotonic()
        key = (svc.code, pid, "banner")
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        value = svc.patient_level(pid)
        with self._lock:
            self._cache[key] = (now, value)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value

    def patient_data(self, svc, pid: str, today, scope=None):
        """(PatientData, PatientView) of one patient; kept ``cache_seconds`` so moving between
        the tabs of one chart does not walk the folders again (the service caches mapped files;
        this keeps the sorted rows).  Memos are read from the journal, never from this cache.

        ``scope``: None = the whole chart; ``"summary"`` = what the summary shows
        (``svc.recent_chart``: the ``-`` folder and the newest days); a frozenset of FHIR types =
        one tab's types.  A cached whole chart serves every scope."""
        from .models import PatientView
        now = time.monotonic()
        with self._lock:
            for k in ((svc.code, pid, None), (svc.code, pid, scope)):
                hit = self._cache.get(k)
                if hit and now - hit[0] < self.cache_seconds and hit[1][1].today == today:
                    self._cache.move_to_end(k)
                    return hit[1]
        key = (svc.code, pid, scope)
        newest = ""
        if scope == "summary":
            data = svc.recent_chart(pid)
            newest = data.newest_day
        elif scope == "patient-level":
            from ..services import PatientData
            data = PatientData(svc.patient_level(pid))
            newest = svc.newest_data_day(pid)
        else:
            data = svc.patient_bundle(pid, set(scope) if scope is not None else None)
            if scope is not None:
                newest = svc.newest_data_day(pid)
        if len(newest) == 8:
            newest = f"{newest[:4]}-{newest[4:6]}-{newest[6:]}"
        value = (data, PatientView(data.resources, today, newest or None))
        with self._lock:
            self._cache[key] = (now, value)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value
