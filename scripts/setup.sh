#!/usr/bin/env bash
# Installs what labrun needs on a fresh Debian or Ubuntu machine, as root.
# Idempotent: packages already present are not fetched again, and the
# server root filesystems are cached under /var/cache/labrun.
set -euo pipefail

need=()
for pair in debootstrap:debootstrap iptables:iptables tshark:tshark ip:iproute2 make:make; do
	bin=${pair%%:*} pkg=${pair#*:}
	command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# tshark asks whether non-root users may capture; the default (no) is fine.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "setup: Go is missing; install Go 1.26 or newer (it is not in Debian stable)" >&2
	exit 3
fi
