#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/prereqs.txt that are missing.
# Idempotent and fast when everything is present (one dpkg-query).
# As root it installs them; otherwise it prints the exact command and fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/prereqs.txt" | grep -v '^$')
missing=()
for p in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "prereqs: missing Debian packages: ${missing[*]}" >&2
  echo "prereqs: run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "prereqs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when an install from the current lists fails
# (a fresh CI machine may have none).
if ! $cmd >/tmp/quark-prereqs.log 2>&1; then
  apt-get update >>/tmp/quark-prereqs.log 2>&1
  $cmd >>/tmp/quark-prereqs.log 2>&1 || { cat /tmp/quark-prereqs.log >&2; exit 1; }
fi
