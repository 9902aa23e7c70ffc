#!/usr/bin/env bash
# Installs what the integration tests need and is not there yet:
#   redis-server   real Redis for internal/redistest
#   python3-redis  redis-py for Debian's /usr/bin/python3, which runs the
#                  reference writer internal/redistest/refwriter.py
#   bind9-dnsutils dig, for end-to-end DNS checks
#   knot-dnsutils  kdig, for the TCP/EDNS/+nsid/+cookie interoperability tests
#   unbound        a real recursive resolver with a stub-zone pointing at regdns
#   knot           Knot DNS, the reference authoritative server of the R24 comparison
#   dnsmasq-base   dnsmasq forwarding the zone to regdns (server=/zone/...); the
#                  binary only: the dnsmasq package would also install, and on
#                  a machine with a working init start, a daemon on port 53
#   iproute2       ip, to bring up loopback in the namespace of sysresolver_test.go
# Silent, and touching nothing, when everything is present.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || missing+=(python3-redis)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v kdig >/dev/null 2>&1 || missing+=(knot-dnsutils)
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || missing+=(unbound)
command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || missing+=(knot)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-test-deps: missing ${missing[*]}, and no apt-get to install them; install them by hand" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-test-deps: missing ${missing[*]}; not root and no sudo, install them by hand" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# sudo resets the environment, so pass DEBIAN_FRONTEND through env.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
