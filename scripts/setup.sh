#!/usr/bin/env bash
# Installs what labrun needs on a fresh Debian or Ubuntu machine, as root.
# Idempotent: packages already present are not fetched again, and the
# server root filesystems are cached under /var/cache/labrun.
set -euo pipefail

need=()
for pair in debootstrap:debootstrap iptables:iptables tshark:tshark ip:iproute2 make:make mkfs.ext4:e2fsprogs; do
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

# --docker: Docker's engine for the container engine (labrun run --engine
# container) and its tests. labrun never uses Docker's networking (it plugs
# its own link into each container's namespace), so a daemon configured
# here changes nothing in the host namespace: no iptables chains, no
# docker0 bridge, no ip_forward. A daemon.json already on the machine is
# left as it is.
if [ "${1:-}" = "--docker" ]; then
	if [ ! -e /etc/docker/daemon.json ]; then
		mkdir -p /etc/docker
		cat >/etc/docker/daemon.json <<'JSON'
{
  "iptables": false,
  "bridge": "none",
  "ip-forward": false,
  "ip-masq": false
}
JSON
	fi
	if ! command -v dockerd >/dev/null 2>&1; then
		echo "setup: installing docker.io"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
	if ! docker version >/dev/null 2>&1; then
		echo "setup: starting dockerd (log in /var/log/labrun-dockerd.log)"
		# Its own session, so that it outlives this script and make.
		setsid dockerd >/var/log/labrun-dockerd.log 2>&1 </dev/null &
		for _ in $(seq 1 60); do
			docker version >/dev/null 2>&1 && break
			sleep 0.5
		done
		if ! docker version >/dev/null 2>&1; then
			echo "setup: dockerd did not answer within 30 s; see /var/log/labrun-dockerd.log" >&2
			tail -n 20 /var/log/labrun-dockerd.log >&2 || true
			exit 3
		fi
	fi
fi
