#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379) are up
# for the tests: starts them, or installs and starts them. Fails loudly when it cannot; the
# tests never skip a missing service.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

pg_up() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    ensure_debs postgresql postgresql-client
  fi
  version=$(ls /etc/postgresql | sort -n | tail -1)
  [ -n "$version" ] || die "no PostgreSQL cluster found in /etc/postgresql"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # The tests connect as postgres without a password over TCP, as on the CI machines.
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    say "allowing trusted local TCP connections in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || die "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (trust)"
fi

if ! redis_up; then
  command -v redis-server >/dev/null || ensure_debs redis-server
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/livecamp-test.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || die "Redis is not reachable at 127.0.0.1:6379"
fi
say "PostgreSQL and Redis are up"
