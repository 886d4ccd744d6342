#!/usr/bin/env bash
# Installs Debian's chromium (and a font) for the browser tests, only if /usr/bin/chromium is missing.
# Idempotent; non-interactive (CI=true, no stdin). Needs root or passwordless sudo to install.
# Never downloads a browser of Playwright's own: the tests drive /usr/bin/chromium.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "install_chromium.sh: $CHROMIUM is missing and this user cannot install packages" \
         "(not root, no passwordless sudo); run as root: apt-get install chromium fonts-dejavu-core" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's chromium with apt-get ..."
"${SUDO[@]}" apt-get update -q </dev/null
"${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core </dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "install_chromium.sh: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
