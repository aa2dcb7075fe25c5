#!/usr/bin/env bash
# Generates the embedded demo hospital once (outside git) and writes its gateway config.
set -euo pipefail
demo=${1:-var/demo}
bin=${BIN:-.venv/bin}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
if [ ! -f "$demo/.complete" ]; then
  rm -rf "$demo/ssmix2" "$demo/receipts" "$demo/extended"
  "$bin/fhir-gateway" synth --out "$demo/ssmix2" --receipts-out "$demo/receipts" \
    --extended-out "$demo/extended" --patients 300 --years 5 --seed 2026 --facility 1310000017
  touch "$demo/.complete"
fi
if [ ! -f "$demo/gateway.toml" ]; then
  cat > "$demo/gateway.toml" <<TOML
# Demo configuration written by scripts/demo.sh
data_dir = "data"

[[facility]]
code = "1310000017"
name = "デモ総合病院"
storage = ["ssmix2"]
extended = ["extended"]
receipts = ["receipts"]
TOML
fi
"$bin/fhir-gateway" index --config "$demo/gateway.toml"
"$bin/python" scripts/demo_accounts.py "$demo/gateway.toml" "${PORT:-8080}"
