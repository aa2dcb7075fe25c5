"""Compare storage replicas (East/West) by manifest: relative path, size and SHA-256.

Each root is walked in sorted order and the walks are merged, so memory does not grow with the
tree.  SHA-256 values are cached in a SQLite file keyed by (root, path, size, mtime_ns): a file
that did not change since the last drill is not read again (``hashed`` counts real reads).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from storage.names import BadFileName, parse_name

from . import kinds

LIST_LIMIT = 1000


def default_cache_dir(data_dir: Path | None = None) -> Path:
    if data_dir is not None:
        return Path(data_dir) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fhir-gateway"


class HashCache:
    """SHA-256 per (root, path, size, mtime_ns) in SQLite; counts cache hits and real reads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS files (root TEXT, path TEXT, size INTEGER, "
                        "mtime_ns INTEGER, sha256 TEXT, PRIMARY KEY (root, path))")
        self.hits = 0
        self.hashed = 0

    def lookup(self, root: str, path: str, size: int, mtime: int) -> str | None:
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE root=? AND path=?",
                              (root, path)).fetchone()
        if row and row[0] == size and row[1] == mtime:
            self.hits += 1
            return row[2]
        return None

    def store(self, rows: list[tuple[str, str, int, int, str]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def walk_files(root: Path, rel: str = "") -> Iterator[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file, in sorted path order (hidden entries skipped)."""
    base = os.path.join(str(root), rel) if rel else str(root)
    try:
        with os.scandir(base) as it:
            # Sort as full paths compare: a folder "a" sorts as "a/", so the merge of two walks
            # (which compares whole relative paths) sees one consistent order.
            entries = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e)
                             for e in it if e.name[0] != ".")
    except OSError:
        return
    for key, e in entries:
        path = f"{rel}/{e.name}" if rel else e.name
        try:
            if key[-1] == "/":
                yield from walk_files(root, path)
            else:
                st = e.stat()
                yield path, st.st_size, st.st_mtime_ns
        except OSError:
            continue


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


class _Hasher:
    """Hashes in batches through a thread pool (hashlib releases the GIL), via the cache."""

    def __init__(self, cache: HashCache, pool: ThreadPoolExecutor) -> None:
        self.cache, self.pool = cache, pool

    def many(self, root: Path, items: list[tuple[str, int, int]]) -> list[str | None]:
        key = str(root)
        out: list[str | None] = [self.cache.lookup(key, p, s, m) for p, s, m in items]
        todo = [i for i, h in enumerate(out) if h is None]
        hashes = list(self.pool.map(lambda i: _sha256(root / items[i][0]), todo))
        rows = []
        for i, h in zip(todo, hashes):
            out[i] = h
            if h is not None:
                self.cache.hashed += 1
                p, s, m = items[i]
                rows.append((key, p, s, m, h))
        if rows:
            self.cache.store(rows)
        return out


def _newest(path: str, best: str) -> str:
    try:
        ts = parse_name(path.rsplit("/", 1)[-1]).timestamp.ljust(17, "0")
    except BadFileName:
        return best
    return ts if ts > best else best


def compare(roots: list[Path], cache_dir: Path) -> dict:
    """Compare every mirror with the first root; return the report section and its problems."""
    cache = HashCache(cache_dir / "manifest.sqlite3")
    problems: list[dict] = []
    pairs = []
    try:
        with ThreadPoolExecutor(8) as pool:
            hasher = _Hasher(cache, pool)
            for i, mirror in enumerate(roots[1:], 1):
                pairs.append(_compare_pair(roots[0], mirror, i, hasher, problems))
    finally:
        cache.close()
    return {"roots": [str(r) for r in roots], "pairs": pairs, "hashed_files": cache.hashed,
            "cache_hits": cache.hits, "problems": problems}


def _compare_pair(a: Path, b: Path, index: int, hasher: _Hasher, problems: list[dict]) -> dict:
    res: dict[str, Any] = {"primary": str(a), "mirror": str(b), "index": index, "files_primary": 0,
           "files_mirror": 0, "only_primary": [], "only_mirror": [], "differ": [],
           "counts": {"only_primary": 0, "only_mirror": 0, "differ": 0, "same": 0}}
    for root in (a, b):
        if not root.is_dir():
            problems.append(kinds.problem(str(root), kinds.KIND_REPLICA_UNREADABLE,
                                          f"replica root {root} is missing or not a folder"))
            return res
    newest = {"primary": "", "mirror": ""}
    mtimes = {"primary": 0, "mirror": 0}
    batch: list[tuple[tuple, tuple]] = []

    def note(side: str, rel: str, cat: str) -> None:
        res["counts"][cat] += 1
        if len(res[cat]) < LIST_LIMIT:
            res[cat].append(rel)
        where = "primary" if cat == "only_primary" else "mirror"
        missing_on = "mirror" if cat == "only_primary" else "primary"
        if cat == "differ":
            problems.append(kinds.problem(rel, kinds.KIND_REPLICA_DIFFERS,
                                          f"content differs between the primary and mirror {index} "
                                          "(same path, different SHA-256)", replica=index))
        else:
            problems.append(kinds.problem(rel, kinds.KIND_REPLICA_MISSING,
                                          f"present on the {where} but missing on the {missing_on} "
                                          f"(mirror {index})", replica=index))

    def flush() -> None:
        if not batch:
            return
        ha = hasher.many(a, [x for x, _ in batch])
        hb = hasher.many(b, [y for _, y in batch])
        for (x, _), h1, h2 in zip(batch, ha, hb):
            if h1 is None or h2 is None or h1 != h2:
                note("both", x[0], "differ")
            else:
                res["counts"]["same"] += 1
        batch.clear()

    def count(side: str, item: tuple[str, int, int]) -> None:
        res[f"files_{side}"] += 1
        newest[side] = _newest(item[0], newest[side])
        mtimes[side] = max(mtimes[side], item[2])

    ia, ib = walk_files(a), walk_files(b)
    x, y = next(ia, None), next(ib, None)
    while x is not None or y is not None:
        if x is not None and (y is None or x[0] < y[0]):
            count("primary", x)
            note("primary", x[0], "only_primary")
            x = next(ia, None)
        elif y is not None and (x is None or y[0] < x[0]):
            count("mirror", y)
            note("mirror", y[0], "only_mirror")
            y = next(ib, None)
        elif x is not None and y is not None:  # the same path on both sides
            count("primary", x)
            count("mirror", y)
            if x[1] != y[1]:
                note("both", x[0], "differ")
            else:
                batch.append((x, y))
                if len(batch) >= 256:
                    flush()
            x, y = next(ia, None), next(ib, None)
    flush()
    res["newest"] = {k: v[:14] for k, v in newest.items()}
    res["lag_days"] = _lag(newest["primary"], newest["mirror"])
    res["newest_mtime_lag_seconds"] = round((mtimes["primary"] - mtimes["mirror"]) / 1e9, 1)
    if res["lag_days"] and res["lag_days"] > 0:
        problems.append(kinds.problem(str(b), kinds.KIND_REPLICA_LAG,
                                      f"mirror {index} is {res['lag_days']} days behind the primary "
                                      f"(newest 発生日時 {res['newest']['mirror'] or 'none'} vs "
                                      f"{res['newest']['primary']})", kinds.WARNING, replica=index))
    return res


def _lag(a: str, b: str) -> float | None:
    from datetime import datetime

    def dt(ts: str):
        try:
            return datetime.strptime(ts[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return None

    da, db = dt(a), dt(b)
    if da is None or db is None:
        return None
    return round((da - db).total_seconds() / 86400, 2)
