#!/usr/bin/env bash
# Debian packages the test suite drives: Chromium for the browser tests (never a downloaded
# browser), jq for the executed README walk-through, a CJK font so console screenshots are
# legible. Installed when missing and this is root on a Debian-like system; otherwise the
# missing ones are named and the tests that need them are skipped (pytest -rs lists them).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v jq >/dev/null || missing+=(jq)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || missing+=(fonts-wqy-microhei)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "system-deps: missing ${missing[*]} (install them with apt as root); tests that need them will be skipped" >&2
fi
