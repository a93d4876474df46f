#!/bin/sh
# Set up everything qsmbids needs in ./.venv, then run one task.
#
#   sh scripts/dev.sh demo [OUTPUT_DIR]   simulate a small cohort and run the whole pipeline
#   sh scripts/dev.sh test [PYTEST_ARGS]  lint (ruff) and run the test suite
#
# Needs only python3 on a Debian/Ubuntu machine: when the venv module is missing
# and we run as root, python3-venv is installed with apt-get.
set -eu

cd "$(dirname "$0")/.."
VENV=${QSMBIDS_VENV:-.venv}
task=${1:-}
[ $# -gt 0 ] && shift

case "$task" in
  demo|test) ;;
  *) echo "usage: sh scripts/dev.sh {demo [OUTPUT_DIR] | test [PYTEST_ARGS]}" >&2; exit 64 ;;
esac

ensure_venv_module() {
  if python3 -c 'import venv, ensurepip' 2>/dev/null; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: installing python3-venv with apt-get" >&2
    apt-get update -qq
    pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "python${pyver}-venv" \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "dev.sh: python3 cannot create virtual environments; install python3-venv (as root: apt-get install python3-venv)" >&2
    exit 69
  fi
}

stamp="$VENV/.qsmbids-installed"
if [ ! -x "$VENV/bin/python" ]; then
  ensure_venv_module
  python3 -m venv "$VENV"
fi
# Reinstall only when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  touch "$stamp"
fi

# The report test renders pages in headless Chromium; install Debian's package when we
# can (root + apt-get). Failure is not fatal: that test then skips and says why.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: installing chromium with apt-get (for the report rendering test)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || echo "dev.sh: could not install chromium; its test will skip" >&2
  fi
  return 0
}

if [ "$task" = test ]; then
  ensure_chromium
  "$VENV/bin/ruff" check qsmbids tests benchmarks
  exec "$VENV/bin/python" -m pytest -n 2 "$@"
else
  exec "$VENV/bin/qsmbids" demo "${1:-qsmbids-demo}"
fi
