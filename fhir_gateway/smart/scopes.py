"""SMART scopes: ``system/{Type|*}.{perms}`` in the v2 form (``cruds`` letters, e.g. ``rs``) and
the v1 form (``read``, ``write``, ``*``).  This server only reads, so only ``r`` (read, vread,
history) and ``s`` (search, export) are ever checked.  Scopes with query restrictions
(``system/Observation.rs?category=...``) are not granted: they would need filtering this server
does not do, and granting them unfiltered would widen access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_SCOPE = re.compile(r"^system/([A-Z][A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)$")
V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}


@dataclass(frozen=True)
class Scope:
    type: str  # a resource type or "*"
    perms: frozenset[str]


@lru_cache(maxsize=1024)  # checked on every API request, for the same few scopes
def parse_scope(text: str) -> Scope | None:
    """A ``system/`` scope, or None for anything else (other contexts, query-restricted)."""
    m = _SCOPE.match(text.strip())
    if not m or not m.group(2):
        return None
    perms = V1.get(m.group(2)) or frozenset(m.group(2))
    return Scope(m.group(1), perms)


def _covers(have: Scope, want: Scope) -> bool:
    return (have.type == "*" or have.type == want.type) and want.perms <= have.perms


def grant(requested: str, registered: tuple[str, ...] | list[str]) -> list[str]:
    """The requested scopes the registration covers (order kept; others dropped, as OAuth lets
    a server grant less than asked)."""
    reg = [s for s in (parse_scope(r) for r in registered) if s]
    out = []
    for text in requested.split():
        want = parse_scope(text)
        if want is not None and any(_covers(h, want) for h in reg) and text not in out:
            out.append(text)
    return out


def allows(scopes: tuple[str, ...] | list[str], rtype: str, perm: str) -> bool:
    """True when a scope grants ``perm`` (``r`` or ``s``) on ``rtype``."""
    for text in scopes:
        s = parse_scope(text)
        if s is not None and (s.type == "*" or s.type == rtype) and perm in s.perms:
            return True
    return False
