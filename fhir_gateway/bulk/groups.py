"""Group resources for Bulk Data cohorts (``fhir-gateway group create``): a named list of
patients per facility, kept in the data directory (``groups/{facility}.json``) because the
SS-MIX2 storage has no such thing.  Served read-only by the API like every other type."""

from __future__ import annotations

import builtins
import os
import secrets
import threading
import time
from pathlib import Path

import orjson

GROUP_DIR = "groups"


class GroupError(ValueError):
    pass


class GroupStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir) / GROUP_DIR
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int | None, list[dict]]] = {}

    def _path(self, facility: str) -> Path:
        return self.dir / f"{facility}.json"

    def list(self, facility: str) -> list[dict]:
        path = self._path(facility)
        try:
            mtime: int | None = path.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        with self._lock:
            hit = self._cache.get(facility)
            if hit and hit[0] == mtime:
                return hit[1]
            try:
                groups = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise GroupError(f"{path} is not a readable group file: {exc}") from exc
            self._cache[facility] = (mtime, groups)
            return groups

    def get(self, facility: str, gid: str) -> dict | None:
        return next((g for g in self.list(facility) if g.get("id") == gid), None)

    def create(self, facility: str, name: str, patients: builtins.list[str]) -> dict:
        if not patients:
            raise GroupError("a group needs at least one patient")
        members: builtins.list[str] = list(dict.fromkeys(patients))
        now = time.strftime("%Y-%m-%dT%H:%M:%S+09:00", time.gmtime(time.time() + 9 * 3600))
        group = {
            "resourceType": "Group",
            "id": f"grp-{secrets.token_hex(6)}",
            "meta": {"versionId": "1", "lastUpdated": now,
                     "source": f"groups/{facility}.json"},
            "identifier": [{"system": "https://fhir-gateway.example.org/group-name",
                            "value": name}],
            "active": True,
            "type": "person",
            "actual": True,
            "name": name,
            "quantity": len(members),
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members],
        }
        groups = [g for g in self.list(facility) if g.get("name") != name] + [group]
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(facility)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(groups, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
        return group


def member_ids(group: dict) -> list[str]:
    out = []
    for m in group.get("member", []):
        ref = (m.get("entity") or {}).get("reference", "")
        if ref.startswith("Patient/"):
            out.append(ref.split("/", 1)[1])
    return out
