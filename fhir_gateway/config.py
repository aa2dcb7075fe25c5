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
from typing import Callable, Mapping

FACILITY_CODE = re.compile(r"^[0-9A-Za-z]{1,16}$")
DEFAULT_FACILITY = "0000000000"


class ConfigError(ValueError):
    pass


def _flag(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true/false")


def _networks(value: str) -> str:
    from fhir_gateway.proxies import check_networks
    return check_networks(value)


def _forwarded_header(value: str) -> str:
    from fhir_gateway.proxies import check_header
    return check_header(value)


@dataclass(frozen=True)
class Setting:
    """One setting of the option table: its TOML key (top level), environment variable and
    command-line flag.  Precedence, for every setting: flag > environment > config > default.
    docs/configuration.md carries this table (tests/test_config_docs.py compares them)."""

    key: str
    env: str
    flag: str  # "" = no flag
    default: object
    parse: Callable[[str], object]
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "FHIR_GATEWAY_DATA_DIR", "--data-dir", "data", str,
            "accounts, tokens, memos, indexes, caches (relative: to the config file; "
            "without a config: to the working folder)"),
    Setting("host", "FHIR_GATEWAY_HOST", "--host", "127.0.0.1", str, "`serve` bind address"),
    Setting("port", "FHIR_GATEWAY_PORT", "--port", 8080, int, "`serve` TCP port (0 = any free)"),
    Setting("workers", "FHIR_GATEWAY_WORKERS", "--workers", 0, int,
            "`serve` worker processes (0 = CPU count)"),
    Setting("threads", "FHIR_GATEWAY_THREADS", "--threads", 4, int,
            "`serve` waitress threads per worker"),
    Setting("cache_mb", "FHIR_GATEWAY_CACHE_MB", "--cache-mb", 128, int,
            "memory all workers together may grow above their start-up size (caches, requests "
            "in flight), MB"),
    Setting("public_url", "FHIR_GATEWAY_PUBLIC_URL", "", "", str,
            "scheme://host[:port] of every generated link"),
    Setting("dsn", "FHIR_GATEWAY_DSN", "--dsn", "", str,
            "PostgreSQL connection for [index]/[state] backend = \"postgresql\" "
            "(the tables' own dsn; `db --dsn`)"),
    Setting("viewer_idle_seconds", "FHIR_GATEWAY_VIEWER_IDLE_SECONDS", "", 1800.0, float,
            "viewer session idle timeout"),
    Setting("secure_cookies", "FHIR_GATEWAY_SECURE_COOKIES", "", False, _flag,
            "viewer cookies only over HTTPS (`__Host-` cookie)"),
    Setting("viewer_cache_seconds", "FHIR_GATEWAY_VIEWER_CACHE_SECONDS", "", 20.0, float,
            "how long the viewer reuses a chart it built"),
    Setting("heavy_slots", "FHIR_GATEWAY_HEAVY_SLOTS", "", 1, int,
            "heavy requests ($everything, export, large searches) at once, whole server"),
    Setting("drain_file", "FHIR_GATEWAY_DRAIN_FILE", "", "", str,
            "while this file exists /health answers 503 draining (load balancers)"),
    Setting("trusted_proxies", "FHIR_GATEWAY_TRUSTED_PROXIES", "", "", _networks,
            "reverse proxies (addresses/networks, comma-separated) whose forwarding header "
            "names the client for the per-client limits; other peers' headers are ignored"),
    Setting("forwarded_header", "FHIR_GATEWAY_FORWARDED_HEADER", "", "x-forwarded-for",
            _forwarded_header, "the header the trusted proxies write: x-forwarded-for or "
            "forwarded (RFC 7239)"),
)
SETTING = {s.key: s for s in SETTINGS}


def resolve_settings(raw: dict, env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every setting from the environment, else the config's top-level key, else its default
    (flags are applied by the commands, :meth:`Config.setting`)."""
    env = os.environ if env is None else env
    out: dict[str, object] = {}
    for s in SETTINGS:
        text = env.get(s.env)
        try:
            if text:
                out[s.key] = s.parse(text)
            elif s.key in raw:
                value = raw[s.key]
                if s.parse is _flag and isinstance(value, bool):
                    out[s.key] = value
                elif s.parse is _networks and isinstance(value, list) and \
                        all(isinstance(v, str) for v in value):
                    out[s.key] = _networks(",".join(value))  # a TOML list of addresses
                elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f"{value!r}")
                else:
                    out[s.key] = s.parse(str(value))
            else:
                out[s.key] = s.default
        except ValueError as exc:
            where = f"${s.env}" if text else f"config key {s.key}"
            raise ConfigError(f"{where}: not a valid {s.key} ({exc})") from None
    return out


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
    processes: int = 0  # mapping processes per job (0 = cores + 1, at most 3)
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
    settings: dict = field(default_factory=lambda: resolve_settings({}))

    def setting(self, key: str, flag: object = None) -> object:
        """The value of a setting of :data:`SETTINGS`: ``flag`` when given, else environment >
        config > default (resolved at load)."""
        return flag if flag is not None else self.settings[key]

    def integer(self, key: str, flag: int | None = None) -> int:
        """:meth:`setting` of a whole-number setting (the option table parsed it with ``int``)."""
        value = self.setting(key, flag)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: {value!r} is not a whole number")
        return value

    def number(self, key: str, flag: float | None = None) -> float:
        """:meth:`setting` of a numeric setting, as a float."""
        value = self.setting(key, flag)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: {value!r} is not a number")
        return float(value)

    def text(self, key: str, flag: str | None = None) -> str:
        """:meth:`setting` of a text setting (host, paths, URLs)."""
        return str(self.setting(key, flag))

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
    settings = resolve_settings(raw)
    # $FHIR_GATEWAY_DATA_DIR beats the file (relative to the working folder); the file's is
    # relative to the file; --data-dir (the commands) beats both
    env_dir = os.environ.get("FHIR_GATEWAY_DATA_DIR")
    data_dir = Path(env_dir).resolve() if env_dir else Path(str(settings["data_dir"]))
    cfg = Config(data_dir if data_dir.is_absolute() else (base / data_dir).resolve())
    cfg.settings = settings
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
    public_url = settings["public_url"]
    if not isinstance(public_url, str) or (public_url and not re.match(
            r"^https?://[A-Za-z0-9.\-\[\]:]+/?$", public_url)):
        raise ConfigError("public_url must be like \"https://gw.example.org\" (scheme://host[:port])")
    cfg.public_url = str(public_url).rstrip("/")
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
    dsn = os.environ.get("FHIR_GATEWAY_DSN") or table.get("dsn") or ""
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
