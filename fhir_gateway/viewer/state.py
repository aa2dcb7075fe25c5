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
    cache_seconds: float = 20.0
    cache_size: int = 8
    _cache: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def patient_data(self, svc, pid: str):
        """PatientData of one patient; kept ``cache_seconds`` so moving between the tabs of one
        chart does not walk the folders again (the service caches mapped files anyway)."""
        key = (svc.code, pid)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_seconds:
                self._cache.move_to_end(key)
                return hit[1]
        data = svc.patient_bundle(pid)
        with self._lock:
            self._cache[key] = (now, data)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data
