#!/usr/bin/env bash
# Generates the embedded demo hospital once (outside git) and writes its gateway config.
set -euo pipefail
demo=${1:-var/demo}
bin=${BIN:-.venv/bin}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
if [ ! -f "$demo/.complete" ]; then
  rm -rf "$demo/ssmix2" "$demo/receipts" "$demo/extended" "$demo/ssmix2-masters"
  "$bin/fhir-gateway" synth --out "$demo/ssmix2" --receipts-out "$demo/receipts" \
    --extended-out "$demo/extended" --patients 300 --years 5 --seed 2026 --facility 1310000017 --heavy-patient \
    --heavy-patient
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
# names for receipt codes: the generator writes 基本マスター files in the official layout
if [ ! -d "$demo/ssmix2-masters" ]; then  # a demo generated before the generator wrote them
  "$bin/python" -c "import sys, pathlib; from fhir_gateway.synth.masters import write_masters; write_masters(pathlib.Path(sys.argv[1]))" "$demo/ssmix2-masters"
fi
"$bin/fhir-gateway" masters import "$demo/ssmix2-masters" --config "$demo/gateway.toml"
"$bin/python" scripts/demo_accounts.py "$demo/gateway.toml" "${PORT:-8080}"
