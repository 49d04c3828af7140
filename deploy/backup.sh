#!/usr/bin/env bash
# Backs up livecamp's database and keys into a timestamped folder.
#   deploy/backup.sh DATA_DIR BACKUP_DIR                 (embedded SQLite)
#   DATABASE_URL=postgres://… deploy/backup.sh DATA_DIR BACKUP_DIR
# The SQLite copy uses SQLite's online backup, so it is consistent while livecamp runs.
set -euo pipefail
data_dir=${1:?usage: backup.sh DATA_DIR BACKUP_DIR}
backup_dir=${2:?usage: backup.sh DATA_DIR BACKUP_DIR}
target="$backup_dir/livecamp-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$target"
chmod 700 "$target"
if [ -n "${DATABASE_URL:-}" ]; then
  command -v pg_dump >/dev/null || { echo "pg_dump is required (apt-get install postgresql-client)" >&2; exit 1; }
  pg_dump --format=custom --file="$target/livecamp.pgdump" "$DATABASE_URL"
else
  command -v sqlite3 >/dev/null || { echo "sqlite3 is required (apt-get install sqlite3)" >&2; exit 1; }
  [ -f "$data_dir/livecamp.db" ] || { echo "no livecamp.db in $data_dir" >&2; exit 1; }
  sqlite3 "$data_dir/livecamp.db" ".backup '$target/livecamp.db'"
  sqlite3 "$target/livecamp.db" "PRAGMA integrity_check" | grep -qx ok
fi
for f in secrets.toml demo-accounts.txt; do
  if [ -f "$data_dir/$f" ]; then cp -p "$data_dir/$f" "$target/"; fi
done
echo "backup written to $target"
