#!/usr/bin/env bash
# Installs the Debian packages that the tests use: Chromium (driven by Playwright for Python,
# no browser download), Japanese fonts for screenshots, wrk for the HTTP benchmarks,
# PostgreSQL and HAProxy for the multi-instance test (tests/test_scale_out.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
axe() {  # axe-core (accessibility checks in the browser tests), pinned in tests/axe/package-lock.json
  if [ ! -f "$here/tests/axe/node_modules/axe-core/axe.min.js" ] && command -v npm >/dev/null 2>&1; then
    (cd "$here/tests/axe" && npm ci --no-audit --no-fund --silent) || echo "system-deps: npm ci failed (axe checks will be skipped)" >&2
  fi
}
trap axe EXIT
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list 2>/dev/null | grep -qi ipagothic || need+=(fonts-ipafont-gothic)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)   # fhir-kit-client test (npm package)
command -v npm >/dev/null 2>&1 || need+=(npm)
# PostgreSQL and HAProxy for the multi-instance (scale-out) tests: a throw-away cluster in a temp dir
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: need root to install ${need[*]} (the browser tests will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
