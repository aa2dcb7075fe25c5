"""Facility configuration: a TOML file for many facilities, or one facility from CLI flags.

    data_dir = "/var/lib/fhir-gateway"      # accounts, tokens, memos, indexes, caches

    [[facility]]
    code = "1311234567"                     # 10-digit 医療機関コード; the FHIR base is /fhir/{code}
    name = "東病院"
    storage = ["/mnt/east/ssmix2", "/mnt/west/ssmix2"]   # primary first, then mirrors
    extended = ["/mnt/east/ssmix2-ext"]
    receipts = ["/mnt/east/uke"]
    cors_origins = ["https://app.example.org"]   # browser apps allowed to call the API (none)

    public_url = "https://gw.example.org"   # optional: the base of every generated link
    trusted_hosts = ["gw.internal"]         # optional: Host names echoed when no public_url

    [index]                                 # optional; default: the embedded whoosh index
    backend = "postgresql"                  # "whoosh" (default) or "postgresql"
    dsn = "postgresql://gw@db.example/fhirgw"
    [state]                                 # optional; default: SQLite + journal files
    backend = "postgresql"                  # "embedded" (default) or "postgresql"
    dsn = "postgresql://gw@db.example/fhirgw"
    [export]
    dask = "tcp://scheduler:8786"           # optional: batch work on a Dask cluster
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

FACILITY_CODE = re.compile(r"^[0-9A-Za-z]{1,16}$")
DEFAULT_FACILITY = "0000000000"


class ConfigError(ValueError):
    pass


def default_data_dir() -> Path:
    """Where accounts, tokens, memos, indexes and caches live when no config names a data_dir:
    ``$FHIR_GATEWAY_DATA_DIR`` if set, else ``./data`` — the same for every subcommand, so
    ``token create`` and ``serve`` run from one folder share their tokens."""
    return Path(os.environ.get("FHIR_GATEWAY_DATA_DIR") or "data").resolve()


@dataclass(frozen=True)
class Facility:
    code: str
    name: str
    storage: tuple[Path, ...]  # primary first, then mirrors (failover order)
    extended: tuple[Path, ...] = ()
    receipts: tuple[Path, ...] = ()
    cors_origins: tuple[str, ...] = ()  # browser origins allowed by CORS; none by default

    @property
    def primary(self) -> Path:
        return self.storage[0]


INDEX_BACKENDS = ("whoosh", "postgresql")
STATE_BACKENDS = ("embedded", "postgresql")


@dataclass(frozen=True)
class Backend:
    """Which implementation holds a piece of shared state (see docs/scale-out.md)."""

    backend: str
    dsn: str = ""  # libpq connection string / URI for "postgresql"

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"


@dataclass
class ExportConfig:
    """``[export]``: Bulk Data export jobs (docs/api.md)."""

    dir: Path | None = None  # export files (default: {data_dir}/bulk-export)
    keep_hours: float = 24.0  # files and job deleted this long after completion
    jobs_per_client: int = 2  # queued/running exports one client may have
    concurrent: int = 1  # jobs run at once per server process
    processes: int = 0  # mapping processes per job (0 = min(2, cores))
    max_file_mb: float = 256.0  # ndjson files are split at this size


@dataclass
class Config:
    data_dir: Path
    facilities: dict[str, Facility] = field(default_factory=dict)
    export: ExportConfig = field(default_factory=ExportConfig)
    index: Backend = field(default_factory=lambda: Backend("whoosh"))
    state: Backend = field(default_factory=lambda: Backend("embedded"))
    export_dask: str = ""  # a Dask scheduler address for batch work, "" = local processes
    public_url: str = ""  # scheme://host[:port] used in every generated link (hosts.py)
    trusted_hosts: tuple[str, ...] = ()  # Host names echoed in links when no public_url

    def facility(self, code: str) -> Facility | None:
        return self.facilities.get(code)


def _paths(value: object, base: Path, what: str) -> tuple[Path, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{what} must be a path or a list of paths")
    return tuple((base / v).resolve() if not Path(v).is_absolute() else Path(v) for v in items)


_ORIGIN = re.compile(r"^(\*|https?://[A-Za-z0-9.\-\[\]:]+)$")


def _origins(value: object, code: str) -> tuple[str, ...]:
    """``cors_origins``: a list of ``scheme://host[:port]`` (no path), or ``"*"``."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and _ORIGIN.match(v.rstrip("/"))
                                               for v in value):
        raise ConfigError(f"facility {code} cors_origins must be a list of origins like "
                          "\"https://app.example.org\" (scheme://host[:port], no path) or \"*\"")
    return tuple(v.rstrip("/") for v in value)


def load(path: str | Path) -> Config:
    """Read a TOML config; relative paths are relative to the file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    base = path.resolve().parent
    if not isinstance(raw.get("data_dir", "data"), str):
        raise ConfigError("data_dir must be a path (a string)")
    data_dir = Path(raw.get("data_dir", "data"))
    cfg = Config(data_dir if data_dir.is_absolute() else (base / data_dir).resolve())
    facilities = raw.get("facility", [])
    if not isinstance(facilities, list) or not all(isinstance(i, dict) for i in facilities):
        raise ConfigError("facilities are [[facility]] tables")
    for item in facilities:
        code = str(item.get("code", ""))
        if not FACILITY_CODE.match(code):
            raise ConfigError(f"facility code {code!r} must be 1-16 letters or digits")
        storage = _paths(item.get("storage"), base, f"facility {code} storage")
        if not storage:
            raise ConfigError(f"facility {code} needs at least one storage root")
        if code in cfg.facilities:
            raise ConfigError(f"facility {code} is configured twice")
        cfg.facilities[code] = Facility(
            code=code,
            name=str(item.get("name", code)),
            storage=storage,
            extended=_paths(item.get("extended"), base, f"facility {code} extended"),
            receipts=_paths(item.get("receipts"), base, f"facility {code} receipts"),
            cors_origins=_origins(item.get("cors_origins"), code),
        )
    if not cfg.facilities:
        raise ConfigError("the config declares no [[facility]]")
    public_url = raw.get("public_url", "")
    if not isinstance(public_url, str) or (public_url and not re.match(
            r"^https?://[A-Za-z0-9.\-\[\]:]+/?$", public_url)):
        raise ConfigError("public_url must be like \"https://gw.example.org\" (scheme://host[:port])")
    cfg.public_url = public_url.rstrip("/")
    hosts = raw.get("trusted_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError("trusted_hosts must be a list of host names")
    cfg.trusted_hosts = tuple(hosts)
    cfg.index = _backend(raw.get("index"), "index", INDEX_BACKENDS)
    cfg.state = _backend(raw.get("state"), "state", STATE_BACKENDS)
    export = raw.get("export", {})
    if not isinstance(export, dict) or not isinstance(export.get("dask", ""), str):
        raise ConfigError("[export] dask must be a scheduler address like tcp://HOST:PORT")
    cfg.export_dask = export.get("dask", "")
    cfg.export = _export(export, base)
    return cfg


def _export(raw: dict, base: Path) -> ExportConfig:
    """``[export]``: Bulk Data export jobs (``dask`` is the drill's, read above)."""
    out = ExportConfig()
    for key, value in raw.items():
        if key == "dask":
            continue
        if key == "dir":
            if not isinstance(value, str):
                raise ConfigError("[export] dir must be a path")
            out.dir = Path(value) if Path(value).is_absolute() else (base / value).resolve()
        elif key in ("keep_hours", "max_file_mb"):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"[export] {key} must be a positive number")
            setattr(out, key, float(value))
        elif key in ("jobs_per_client", "concurrent", "processes"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or \
                    (value == 0 and key != "processes"):
                raise ConfigError(f"[export] {key} must be a positive whole number")
            setattr(out, key, value)
        else:
            raise ConfigError(f"[export] has no setting {key!r}")
    return out


def _backend(table: object, name: str, allowed: tuple[str, ...]) -> Backend:
    """``[index]`` / ``[state]``: the backend name and, for PostgreSQL, its DSN (or the
    ``FHIR_GATEWAY_DSN`` environment variable, so the password need not sit in the file)."""
    if table is None:
        return Backend(allowed[0])
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    backend = table.get("backend", allowed[0])
    if backend == "embedded":
        backend = allowed[0]
    if backend not in allowed:
        raise ConfigError(f"[{name}] backend must be one of {', '.join(allowed)}")
    dsn = table.get("dsn") or os.environ.get("FHIR_GATEWAY_DSN", "")
    if not isinstance(dsn, str):
        raise ConfigError(f"[{name}] dsn must be a string")
    if backend == "postgresql" and not dsn:
        raise ConfigError(f"[{name}] backend = \"postgresql\" needs a dsn "
                          "(or FHIR_GATEWAY_DSN in the environment)")
    return Backend(backend, dsn)


def from_args(storage: list[str], facility: str | None, receipts: list[str] | None = None,
              extended: list[str] | None = None, data_dir: str | None = None,
              name: str | None = None) -> Config:
    """One facility from command-line flags."""
    code = facility or DEFAULT_FACILITY
    if not FACILITY_CODE.match(code):
        raise ConfigError(f"facility code {code!r} must be 1-16 letters or digits")
    fac = Facility(code, name or code, tuple(Path(s).resolve() for s in storage),
                   tuple(Path(s).resolve() for s in extended or ()),
                   tuple(Path(s).resolve() for s in receipts or ()))
    return Config(Path(data_dir).resolve() if data_dir else default_data_dir(), {code: fac})
