"""Bulk Data export jobs and Group cohorts (issue 12): :mod:`.export` writes the files,
:mod:`.manager` schedules jobs (bounded, restart-safe), :mod:`.store` keeps job state,
:mod:`.groups` keeps the Groups that ``fhir-gateway group create`` makes."""

from __future__ import annotations

import threading

from .groups import GroupStore
from .manager import BulkManager, Settings


def init_app(app, gateway) -> None:
    """Attach the export manager, and serve Groups through every facility's plug-in reader."""
    cfg = app.config["FHIR_CONFIG"]
    ec = cfg.export
    settings = Settings(dir=ec.dir or (cfg.data_dir / "bulk-export"), keep_hours=ec.keep_hours,
                        jobs_per_client=ec.jobs_per_client, concurrent=ec.concurrent,
                        processes=ec.processes, max_file_mb=ec.max_file_mb,
                        dask=cfg.export_dask)
    settings.dir.mkdir(parents=True, exist_ok=True)
    state = app.extensions.get("state")  # job state: the configured state store's
    manager = BulkManager(gateway, cfg.data_dir, settings,
                          jobs=state.export_jobs() if state is not None else None)
    app.extensions["bulk"] = manager

    def read_group(code: str, rtype: str, rid: str):
        return manager.groups.get(code, rid) if rtype == "Group" else None

    for svc in gateway.facilities.values():
        svc.add_resource_reader(read_group)
    # resume jobs a restart interrupted; not at once, so a short-lived app (serve's start-up
    # check) never claims a job
    timer = threading.Timer(3.0, manager.start)
    timer.daemon = True
    timer.start()


__all__ = ["BulkManager", "GroupStore", "Settings", "init_app"]
