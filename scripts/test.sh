#!/usr/bin/env bash
# `make test`: every check CI runs — formatting, clippy (warnings denied), all Rust tests against
# SQLite, PostgreSQL and Redis, the type-checked web build, and the browser test in headless
# Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_tools
ensure_build_deps
ensure_cmd psql postgresql-client
ensure_cmd redis-cli redis-tools
ensure_cmd curl curl
ensure_cmd python3 python3
# The transcoding tests make their clips with the ffmpeg CLI and check them with ffprobe.
ensure_cmd ffprobe ffmpeg
ensure_cmd ffmpeg ffmpeg
scripts/test-services.sh
scripts/build-web.sh
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo test (SQLite, PostgreSQL, Redis)"
cargo test --workspace --locked --no-fail-fast
say "browser test"
scripts/e2e.sh target/debug/livecamp
say "all checks passed"
