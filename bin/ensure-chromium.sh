#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (tests/browser/), which drive it with
# Playwright for Python through executable_path (never `playwright install`, which downloads a build).
# Installs it with apt when /usr/bin/chromium is missing and apt is available (as root, or with sudo
# without a password); otherwise says so and exits 0: the browser tests then skip with this reason
# (they fail instead under CI, where apt is available).
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available; the browser tests will skip." >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-chromium: $CHROMIUM is missing and installing it needs root (apt-get install -y chromium);" \
         "the browser tests will skip." >&2
    exit 0
  fi
fi
echo "ensure-chromium: installing Debian's chromium with apt-get (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists; update them only when chromium is not known yet.
if ! apt-cache show chromium >/dev/null 2>&1; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "ensure-chromium: apt-get finished but $CHROMIUM is still missing." >&2
  exit 1
fi
