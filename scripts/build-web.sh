#!/usr/bin/env bash
# Builds the browser app into web/dist (type-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_tools
npm_ci web/app
say "building the web app"
(cd web/app && npm run --silent build) || die "web build failed"
