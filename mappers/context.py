"""What a mapper knows besides the message: facility, source file and version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from storage.memo import memo
from storage.names import FileName
from storage.timestamps import parse_ts

from .fhirtime import instant_text
from .jsontypes import Json


class ResourceContext(Protocol):
    """What the shared element helpers need of a context (:class:`MapContext`, extended's)."""

    @property
    def facility(self) -> str: ...

    @property
    def patient_id(self) -> str: ...

    def meta(self, profile: str | None = None) -> Json: ...


@dataclass(frozen=True, slots=True)
class MapContext:
    facility: str  # 10-digit 医療機関コード (or the configured facility code)
    source: str  # storage-relative path of the file -> meta.source
    name: FileName  # parsed file name (record key, flag, 発生日時)
    version: int = 1  # position in the record's version chain -> meta.versionId

    @property
    def patient_id(self) -> str:
        return self.name.patient_id

    @property
    def last_updated(self) -> str:
        """meta.lastUpdated from the file's 発生日時 (an instant in +09:00)."""
        return _instant(self.name.timestamp)

    def meta(self, profile: str | None = None) -> Json:
        m: Json = {
            "versionId": str(self.version),
            "lastUpdated": self.last_updated,
            "source": self.source,
        }
        if profile:
            m["profile"] = [profile]
        return m


@memo(4096)
def _instant(timestamp: str) -> str:
    """Cached: every resource of a message asks for the same 発生日時."""
    t = parse_ts(timestamp)
    return instant_text(t) if t else "1970-01-01T09:00:00+09:00"
