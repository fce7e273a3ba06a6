#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real, if missing:
# PostgreSQL (the shared approval store's tests start a throwaway server
# of their own; the package's own cluster is not used) and Chromium (the
# reviewers' page is tested in it, headless, driven by chromedp).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
