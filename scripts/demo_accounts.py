"""Demo-only accounts for `make run`: a hospital admin and a department viewer, the facility
passphrase (合言葉) and disaster access switched on, so the viewer can be tried at once.

Never use these credentials outside the embedded demo."""

from __future__ import annotations

import sys
from pathlib import Path

from fhir_gateway.accounts.store import AccountStore
from fhir_gateway.config import load

DEMO_USERS = (("demo-admin", "demo-admin-2026", "hospital-admin"), ("demo", "demo-viewer-2026", "viewer"))
PASSPHRASE = "sakura-2026"


def main(config_path: str) -> None:
    cfg = load(config_path)
    facility = next(iter(cfg.facilities))
    store = AccountStore(Path(cfg.data_dir))
    for username, password, role in DEMO_USERS:
        if store.get(username) is None:
            store.add_user(username, password, role, facility, display="デモ")
    if store.passphrase_info(facility) is None:
        store.set_passphrase(facility, PASSPHRASE, by="demo-admin")
    if not store.access(facility).enabled:
        store.switch_access(facility, True, "デモ環境 (demo)", by="demo-admin", person="デモ管理者",
                            staff_no="0000")
    print(f"viewer: http://127.0.0.1:{sys.argv[2] if len(sys.argv) > 2 else 8080}/  "
          f"user demo / demo-viewer-2026 (admin: demo-admin / demo-admin-2026), "
          f"合言葉 {PASSPHRASE}  [demo only]")


if __name__ == "__main__":
    main(sys.argv[1])
