#!/usr/bin/env bash
# The browser the web pages' tests drive: Debian's Chromium, installed when absent.
#
#   scripts/chromium.sh          install Chromium if absent (Debian, as root); the last line on
#                                stdout is the browser's path
#
# Settings (environment):
#   ENCD_CHROMIUM  a browser to use instead of looking for one (its path is printed as is)
#
# Not as root, Chromium must already be installed (sudo apt-get install chromium). Progress
# goes to stderr, the path to stdout.
set -euo pipefail

say() { echo "chromium.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

find_browser() {
    if [[ -n "${ENCD_CHROMIUM:-}" ]]; then
        [[ -x "$ENCD_CHROMIUM" ]] || die "ENCD_CHROMIUM is not an executable file: $ENCD_CHROMIUM"
        echo "$ENCD_CHROMIUM"
        return 0
    fi
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if find_browser; then
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "Chromium is not installed: run this as root once, or: sudo apt-get install chromium"
command -v apt-get >/dev/null || die "Chromium is not installed, and there is no apt-get to install it"
say "installing Chromium from the distribution's packages"
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -q -o DPkg::Lock::Timeout=300)
# apt's own output goes to stderr: stdout is kept for the path.
"${apt[@]}" update >&2
"${apt[@]}" install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    chromium fonts-dejavu-core >&2
find_browser || die "Chromium was installed but no chromium command is on PATH"
