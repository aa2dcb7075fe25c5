"""Per-app viewer state: config, services, accounts, memos, and a short patient cache."""

from __future__ import annotations

import os
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
    cache_seconds: float = float(os.environ.get("FHIR_GATEWAY_VIEWER_CACHE_SECONDS", "20"))
    cache_size: int = 8
    _cache: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def patient_data(self, svc, pid: str, today):
        """(PatientData, PatientView) of one patient; kept ``cache_seconds`` so moving between
        the tabs of one chart does not walk the folders again (the service caches mapped files;
        this keeps the sorted rows).  Memos are read from the journal, never from this cache."""
        from .models import PatientView
        key = (svc.code, pid)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_seconds and hit[1][1].today == today:
                self._cache.move_to_end(key)
                return hit[1]
        data = svc.patient_bundle(pid)
        value = (data, PatientView(data.resources, today))
        with self._lock:
            self._cache[key] = (now, value)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value
