#!/usr/bin/env bash
# Checks deploy/systemd/spotoken.service (and spotoken.sysusers, the user it
# runs as): systemd-analyze verify, with
# ExecStart pointed at a binary built from this checkout, must print nothing
# (it warns about unknown keys and bad values but still exits 0), and the
# offline security exposure must stay at or below 2.0 ("OK"). Skips, saying
# so, when systemd-analyze is not installed (Debian: apt-get install systemd).
set -euo pipefail
cd "$(dirname "$0")/../.."
unit=deploy/systemd/spotoken.service
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED: systemd-analyze is not installed; $unit was not verified"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/spotoken" ./cmd/spotoken
sed "s#^ExecStart=/usr/local/bin/spotoken #ExecStart=$tmp/spotoken #" "$unit" > "$tmp/spotoken.service"
grep -q "^ExecStart=$tmp/spotoken serve" "$tmp/spotoken.service" || { echo "$unit: ExecStart is not /usr/local/bin/spotoken serve"; exit 1; }
if ! out=$(systemd-analyze verify "$tmp/spotoken.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-analyze verify $unit:"; echo "$out"; exit 1
fi
systemd-analyze security --offline=true --threshold=20 "$tmp/spotoken.service" | tail -n 1
echo "$unit: verified"
# The user it runs as: a dry run of systemd-sysusers in an empty root.
if command -v systemd-sysusers >/dev/null; then
  mkdir -p "$tmp/root/etc"
  if ! out=$(systemd-sysusers --dry-run --root="$tmp/root" "$PWD/deploy/systemd/spotoken.sysusers" 2>&1) ||
    ! grep -q "Creating user 'spotoken'" <<<"$out"; then
    echo "systemd-sysusers deploy/systemd/spotoken.sysusers:"; echo "$out"; exit 1
  fi
  echo "deploy/systemd/spotoken.sysusers: verified"
fi
