#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs every test:
# the Rust workspace, the web page's unit tests, and the browser end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
node --test api/web/test/
(cd api/e2e && npm ci --no-audit --no-fund --silent)
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/e2e"
node api/e2e/browser.mjs "$target/debug" "$target/e2e"
