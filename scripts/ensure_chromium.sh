#!/usr/bin/env bash
# Make sure a headless Chromium is available for the report tests (tests/test_report.py).
# Installs Debian's `chromium` package when it is missing and we are root with apt-get.
# Always exits 0: the tests skip with a clear reason when no browser can be found.
set -u
find_browser() {
  for b in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}
if b=$(find_browser); then
  echo "ensure_chromium: found $b"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure_chromium: chromium missing and not root; report browser tests will be skipped"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: chromium missing and no apt-get; report browser tests will be skipped"
  exit 0
fi
echo "ensure_chromium: installing chromium with apt-get (a few minutes the first time)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends chromium >/tmp/ensure_chromium.log 2>&1; then
  apt-get update -q >>/tmp/ensure_chromium.log 2>&1
  apt-get install -y -q --no-install-recommends chromium >>/tmp/ensure_chromium.log 2>&1
fi
if b=$(find_browser); then
  echo "ensure_chromium: installed $b"
else
  echo "ensure_chromium: install failed (see /tmp/ensure_chromium.log); report browser tests will be skipped"
fi
exit 0
