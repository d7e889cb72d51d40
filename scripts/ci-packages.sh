#!/usr/bin/env bash
# Debian packages that specs drive as real programs: HAProxy (PROXY protocol), Chromium (the
# console's status page), openssl (TLS interop), Perl Danga::Socket (benchmarks only).
# Idempotent: installs only what is missing. Needs root (CI runs as root).
set -u
want=(haproxy chromium openssl)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
