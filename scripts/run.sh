#!/usr/bin/env bash
# `make run`: build everything and start livecamp on the embedded default (SQLite, in-process bus,
# demo data). Extra arguments go to `livecamp`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_tools
ensure_build_deps
scripts/build-web.sh
say "building the server (release)"
cargo build --release --locked --bin livecamp
exec ./target/release/livecamp "$@"
