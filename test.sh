#!/usr/bin/env bash
# The test command (README, "Set-up"; .ci/run calls it): installs archcost with its test extras
# into the current Python, makes headless Chromium available for the HTML report tests, then
# runs ruff and the test suite. Arguments go to pytest: ./test.sh tests/test_report.py -x
#
# torch==2.13.0 is pinned first so pip takes the CPU build instead of pulling the multi-GB CUDA
# one; any torch >= 2.4 works once installed. Chromium: the first of $ARCHCOST_CHROMIUM,
# chromium, chromium-browser, google-chrome on PATH; else, where apt-get exists, Debian's
# package, installed (with sudo when not root; a no-op when it is there) and its binary found
# through dpkg, on PATH or not. Its path reaches the tests in ARCHCOST_CHROMIUM. Without one,
# the report tests fail saying so (they are never skipped).
set -euo pipefail
cd "$(dirname "$0")"

echo "test.sh: python -m pip install torch==2.13.0 -e '.[test]'"
python -m pip install --quiet torch==2.13.0 -e '.[test]'

find_chromium() {
    local name
    if [ -n "${ARCHCOST_CHROMIUM:-}" ] && [ -x "$ARCHCOST_CHROMIUM" ]; then
        echo "$ARCHCOST_CHROMIUM"
        return
    fi
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return
        fi
    done
}

install_chromium() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "test.sh: not root and no sudo: cannot apt-get install chromium" >&2
            return 0
        fi
        sudo="sudo"
    fi
    echo "test.sh: installing Chromium (apt-get install chromium) for the HTML report tests" >&2
    # the package lists may be missing or stale on a fresh machine: update only when needed
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        $sudo apt-get update -qq >/dev/null
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
}

chromium="$(find_chromium)"
if [ -z "$chromium" ] && command -v apt-get >/dev/null 2>&1; then
    install_chromium || echo "test.sh: apt-get install chromium failed" >&2
    # the package's own file list names its binary, on PATH or not
    chromium="$(dpkg -L chromium 2>/dev/null | grep -m1 -E '/bin/chromium$' || true)"
fi
if [ -n "$chromium" ]; then
    export ARCHCOST_CHROMIUM="$chromium"
else
    echo "test.sh: no headless Chromium found or installed: the HTML report tests will fail" >&2
fi
echo "test.sh: python $(python -c 'import sys; print(sys.executable)'), chromium ${chromium:-none}"

ruff check .
exec python -m pytest -n 2 "$@"
