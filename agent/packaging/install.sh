#!/bin/sh
# Installs the router-fleet agent on a Linux-based router or server.
#
#   sh install.sh [--bundle DIR/fleet-agent.mjs] [--profile PROFILE.tar] [--trust-anchor CA.pem]
#                 [--prefix /opt/fleet-agent] [--data /var/lib/fleet-agent] [--no-systemd]
#
# Needs: Node.js >= 20.19 on PATH, root (for the system user and the unit). Idempotent: running it
# again upgrades the bundle and keeps the data directory (profile, journal, outbox). The bundle is
# fleet-agent.mjs and the chunks (*.mjs) beside it, which it loads when it needs them: all are installed.
set -eu

BUNDLE="$(dirname "$0")/../dist-bundle/fleet-agent.mjs"
PREFIX=/opt/fleet-agent
DATA=/var/lib/fleet-agent
PROFILE=
ANCHOR=
SYSTEMD=yes
UNIT_SRC="$(dirname "$0")/fleet-agent.service"

while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --trust-anchor) ANCHOR=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --no-systemd) SYSTEMD=no; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

fail() { echo "install.sh: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "Node.js >= 20.19 is required (node not found on PATH)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || fail "Node.js >= 20.19 is required (found $(node -v))"
[ -f "$BUNDLE" ] || fail "bundle not found: $BUNDLE (build it with: npm run bundle -w agent)"
[ "$(id -u)" -eq 0 ] || fail "run as root"

if ! id fleet-agent >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin fleet-agent
  else
    adduser -S -D -H -h "$DATA" -s /sbin/nologin fleet-agent   # BusyBox / Alpine
  fi
fi

install -d -m 0755 "$PREFIX"
# The chunks first, the entry last: a new entry never finds its chunks missing. Chunks of the
# previous version stay until the agent has restarted (a running agent may still load one).
BUNDLE_DIR="$(dirname "$BUNDLE")"
INSTALLED=" fleet-agent.mjs "
for f in "$BUNDLE_DIR"/*.mjs "$BUNDLE_DIR"/*.LEGAL.txt; do
  [ -f "$f" ] && [ "$f" != "$BUNDLE" ] || continue
  install -m 0644 "$f" "$PREFIX/$(basename "$f")"
  INSTALLED="$INSTALLED$(basename "$f") "
done
install -m 0755 "$BUNDLE" "$PREFIX/fleet-agent.mjs"
remove_old_chunks() {
  for f in "$PREFIX"/*.mjs "$PREFIX"/*.LEGAL.txt; do
    [ -f "$f" ] || continue
    case "$INSTALLED" in *" $(basename "$f") "*) ;; *) rm -f "$f" ;; esac
  done
}
ln -sf "$PREFIX/fleet-agent.mjs" /usr/local/bin/fleet-agent
install -d -m 0700 -o fleet-agent -g fleet-agent "$DATA"

if [ -n "$PROFILE" ]; then
  set -- provision "$PROFILE" --data "$DATA"
  [ -n "$ANCHOR" ] && set -- "$@" --trust-anchor "$ANCHOR"
  if command -v runuser >/dev/null 2>&1; then runuser -u fleet-agent -- node "$PREFIX/fleet-agent.mjs" "$@"
  else su -s /bin/sh fleet-agent -c "node '$PREFIX/fleet-agent.mjs' $*"; fi
fi

if [ "$SYSTEMD" = yes ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  sed -e "s#/opt/fleet-agent#$PREFIX#g" -e "s#/var/lib/fleet-agent#$DATA#g" "$UNIT_SRC" > /etc/systemd/system/fleet-agent.service
  systemctl daemon-reload
  systemctl enable fleet-agent.service
  systemctl restart fleet-agent.service
  remove_old_chunks
  echo "fleet-agent installed and started: systemctl status fleet-agent; journalctl -u fleet-agent"
else
  echo "fleet-agent installed. Start it with: fleet-agent run --data $DATA   (it supervises itself)"
  echo "(an agent of an earlier version that is still running keeps its chunks in $PREFIX until you run install.sh again after restarting it)"
fi
