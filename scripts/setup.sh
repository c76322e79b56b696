#!/usr/bin/env bash
# Makes a machine ready to run the project: npm dependencies, NATS with JetStream on
# 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432 (with max_prepared_transactions for critical
# operations and wal_level=logical for the capture of SQL writes), and the project's database.
# Idempotent: what is installed is not installed again, what listens is not started twice.
# Installing system packages needs root (apt-get); on a machine that has them it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_PORT="${FLEET_NATS_PORT:-4222}"
PG_PORT="${FLEET_PG_PORT:-5432}"
PG_USER="${FLEET_PG_USER:-postgres}"
DB_NAME="${FLEET_DB_NAME:-fleet_sync}"
STATE_DIR="${FLEET_STATE_DIR:-/var/lib/fleet-sync}"

log() { printf 'setup: %s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do listening "$port" && return 0; sleep 0.1; done
  echo "setup: $name did not start listening on 127.0.0.1:$port" >&2
  return 1
}

# --- npm dependencies -------------------------------------------------------------
# Reinstall only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s <(sha1sum package-lock.json | cut -d' ' -f1) node_modules/.fleet-lock-sha 2>/dev/null; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  sha1sum package-lock.json | cut -d' ' -f1 > node_modules/.fleet-lock-sha
fi

# --- NATS with JetStream ----------------------------------------------------------
NATS_BIN="$(command -v nats-server || true)"
[ -n "$NATS_BIN" ] || [ ! -x /usr/sbin/nats-server ] || NATS_BIN=/usr/sbin/nats-server
if ! listening "$NATS_PORT"; then
  if [ -z "$NATS_BIN" ]; then apt_install nats-server; NATS_BIN="$(command -v nats-server || echo /usr/sbin/nats-server)"; fi
  sudo_ mkdir -p "$STATE_DIR/nats"
  log "starting nats-server with JetStream on 127.0.0.1:$NATS_PORT"
  # --pidfile: another nats-server on this machine (another port) must not count as "already running"
  sudo_ start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$STATE_DIR/nats-$NATS_PORT.pid" --exec "$NATS_BIN" -- \
    -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE_DIR/nats" -l "$STATE_DIR/nats-server.log"
  wait_for_port "$NATS_PORT" nats-server
else
  log "NATS already listening on 127.0.0.1:$NATS_PORT"
fi

# --- PostgreSQL -------------------------------------------------------------------
if ! listening "$PG_PORT"; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  log "starting PostgreSQL $ver on 127.0.0.1:$PG_PORT"
  sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_for_port "$PG_PORT" PostgreSQL
else
  log "PostgreSQL already listening on 127.0.0.1:$PG_PORT"
fi
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
# The NATS TLS test makes its CA and certificates with openssl (libs/messaging/src/tls.int.spec.ts).
command -v openssl >/dev/null 2>&1 || apt_install openssl

psql_() { PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$@"; }
if ! psql_ -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster asks loopback clients for a password. This is a development and
  # test machine: trust loopback connections, as the project's defaults expect.
  hba="$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | sort -V | tail -n1)"
  if [ -n "$hba" ] && ! grep -q '# fleet-sync' "$hba"; then
    log "trusting loopback connections in $hba"
    sudo_ sed -i '1i host all all 127.0.0.1/32 trust # fleet-sync\nhost all all ::1/128 trust # fleet-sync' "$hba"
    sudo_ pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$hba")")")" main reload
  fi
  psql_ -d postgres -tAc 'select 1' >/dev/null
fi
# Two server settings need a restart, so they are set together, once:
# - critical operations are a two-phase commit whose server participant is a PostgreSQL prepared
#   transaction: the default max_prepared_transactions (0) refuses them (FLEET_TPC_002);
# - server-side SQL writes are captured from the WAL by logical replication: wal_level = logical
#   (the default, replica, refuses the capture's slot: FLEET_CAPTURE_001).
# When the server on $PG_PORT is a Debian cluster of this machine (pg_lsclusters, matched by its data
# directory) and we are superuser: ALTER SYSTEM, then a restart (through systemd when systemd runs it).
# Anything else (a container, a managed server) is left alone, with a warning.
pg_settings_ok() {
  [ "$(psql_ -d postgres -tAc 'show max_prepared_transactions')" != 0 ] && [ "$(psql_ -d postgres -tAc 'show wal_level')" = logical ]
}
if ! pg_settings_ok; then
  data_dir="$(psql_ -d postgres -tAc 'show data_directory')"
  cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v d="$data_dir" '$6 == d { print $1, $2 }')"
  if [ -n "$cluster" ] && [ "$(psql_ -d postgres -tAc 'select rolsuper from pg_roles where rolname = current_user')" = t ]; then
    read -r cluster_ver cluster_name <<<"$cluster"
    log "setting max_prepared_transactions = 64 (critical operations) and wal_level = logical (capture of SQL writes), restarting PostgreSQL $cluster_ver/$cluster_name"
    if [ "$(psql_ -d postgres -tAc 'show max_prepared_transactions')" = 0 ]; then psql_ -d postgres -c 'alter system set max_prepared_transactions = 64'; fi
    psql_ -d postgres -c 'alter system set wal_level = logical'
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      sudo_ systemctl restart "postgresql@$cluster_ver-$cluster_name" || true
    else
      sudo_ pg_ctlcluster --skip-systemctl-redirect "$cluster_ver" "$cluster_name" restart || true
    fi
    wait_for_port "$PG_PORT" PostgreSQL
    for _ in $(seq 1 50); do psql_ -d postgres -tAc 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if [ "$(psql_ -d postgres -tAc 'show max_prepared_transactions')" = 0 ]; then
    log "warning: PostgreSQL on 127.0.0.1:$PG_PORT has max_prepared_transactions = 0: critical operations are refused (FLEET_TPC_002) until it is raised (and the demo skips them)"
  fi
  if [ "$(psql_ -d postgres -tAc 'show wal_level')" != logical ]; then
    log "warning: PostgreSQL on 127.0.0.1:$PG_PORT has wal_level = $(psql_ -d postgres -tAc 'show wal_level'): SQL writes to server_records are not captured (FLEET_CAPTURE_001) until it is logical (and the demo skips them)"
  fi
fi
# A fleet run (demo, tests) captures SQL writes through a slot named after its database and drops it
# when it ends; a run that was killed leaves it inactive, holding the server's WAL and its database.
# A slot is left alone while anything is connected to its database (a run still going, between retries).
if [ "$(psql_ -d postgres -tAc 'show wal_level')" = logical ]; then
  for slot in $(psql_ -d postgres -tAc "select s.slot_name from pg_replication_slots s where not s.active and s.slot_name like 'fleet\_run\_%' and not exists (select 1 from pg_stat_activity a where a.datname = s.database)"); do
    log "dropping replication slot $slot, left by a fleet run that did not finish"
    psql_ -d postgres -tAc "select pg_drop_replication_slot('$slot')" >/dev/null || true
  done
fi
if [ "$(psql_ -d postgres -tAc "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]; then
  log "creating database $DB_NAME"
  psql_ -d postgres -c "create database \"$DB_NAME\""
fi
log "ready"
