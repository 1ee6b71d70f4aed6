#!/usr/bin/env bash
# Set up the project in .venv (idempotent) and run one job:
#   ./dev.sh demo  [args]   the quickstart on a local Dask cluster
#   ./dev.sh test  [args]   the test suite (pytest args allowed)
#   ./dev.sh bench [args]   the benchmarks (python -m benchmarks ...)
# Needs only Python 3.11 with venv and pip.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV=.venv

# Headless Chromium for the dashboard page's browser test (Debian's package; Playwright drives it, it
# downloads no browser). Only when missing, so a set-up machine skips this at once.
install_chromium() {
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && return
    command -v apt-get >/dev/null || { echo "dev.sh: no apt-get; install chromium for the browser test" >&2; return; }
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "dev.sh: installing chromium (apt) for the dashboard browser test" >&2
    # apt may be busy (unattended upgrades, another install): wait for its locks, up to 10 minutes.
    local wait=(-o DPkg::Lock::Timeout=600)
    if ! { $sudo apt-get "${wait[@]}" update -qq \
            && DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait[@]}" install -y -qq chromium; } >/dev/null; then
        echo "dev.sh: could not install chromium; the dashboard browser test will be skipped (fails under CI)" >&2
    fi
}

setup() {
    install_chromium
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.bigdl-installed"
    local want
    want="$(cat pyproject.toml dev.sh | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # The CPU wheel of torch first: an unpinned torch pulls gigabytes of CUDA wheels.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    echo "$want" > "$stamp"
}

job="${1:-}"
shift || true
case "$job" in
    demo)  setup; exec "$VENV/bin/python" workflows/quickstart.py "$@" ;;
    test)  setup; exec "$VENV/bin/python" -m pytest "$@" ;;
    bench) setup; exec "$VENV/bin/python" -m benchmarks "$@" ;;
    setup) setup ;;
    *) echo "usage: ./dev.sh demo|test|bench|setup [args]" >&2; exit 2 ;;
esac
