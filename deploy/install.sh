#!/usr/bin/env bash
# Install an SHT service with systemd: `deploy/install.sh node|store` (as root; `just install-node`).
# ROOT=/some/dir installs into that directory tree instead of / and skips useradd/systemctl (a dry run).
set -euo pipefail
role="${1:?usage: install.sh node|store}"
case "$role" in node|store) ;; *) echo "install.sh: node or store, not $role" >&2; exit 2;; esac
root="${ROOT:-}"
src="$(cd "$(dirname "$0")/.." && pwd)"
run() { if [ -n "$root" ]; then echo "(dry run) $*"; else "$@"; fi; }

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (sudo just install-$role)" >&2; exit 1; fi
run id sht >/dev/null 2>&1 || run useradd --system --home /var/lib/sht --shell /usr/sbin/nologin sht
[ "$role" = node ] && run usermod -aG video,render sht

mkdir -p "$root/opt/sht" "$root/etc/sht" "$root/var/lib/sht"
extras=""
# On a Pi, picamera2 and libcamera come from Raspberry Pi OS (apt install python3-picamera2): the venv sees them.
if [ "$role" = node ] && grep -qs "Raspberry Pi" /proc/device-tree/model; then extras="[pi]"; fi
if [ ! -x "$root/opt/sht/venv/bin/python" ]; then
    run python3 -m venv --system-site-packages "$root/opt/sht/venv"
fi
run "$root/opt/sht/venv/bin/pip" install --quiet "$src$extras"

mkdir -p "$root/etc/systemd/system"
install -m 0644 "$src/deploy/sht-$role.service" "$root/etc/systemd/system/sht-$role.service"
if [ "$role" = node ]; then
    [ -e "$root/etc/sht/node.env" ] || install -m 0600 "$src/deploy/node.env.example" "$root/etc/sht/node.env"
    [ -e "$root/etc/sht/node.json" ] || install -m 0644 "$src/deploy/node.json.example" "$root/etc/sht/node.json"
else
    mkdir -p "$root/srv/sht"
    run chown sht:sht "$root/srv/sht"
    [ -e "$root/etc/sht/store.env" ] || printf 'SHT_STORE_ARGS=\n' > "$root/etc/sht/store.env"
fi
run chown -R sht:sht "$root/var/lib/sht"
run systemctl daemon-reload
run systemctl enable "sht-$role.service"
echo "installed sht-$role: edit /etc/sht/${role}.env$([ "$role" = node ] && echo ' and /etc/sht/node.json'), then: systemctl start sht-$role"
