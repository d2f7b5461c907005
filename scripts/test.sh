#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs every test:
# the Rust workspace, the web page's unit tests, schemathesis against live nodes, and the
# browser end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The GPU kernel is generated: the checked-in file must be exactly what the generator writes.
python3 shaders/gen_sha256d.py | cmp - shaders/sha256d.wgsl ||
  { echo "shaders/sha256d.wgsl is stale: run python3 shaders/gen_sha256d.py > shaders/sha256d.wgsl" >&2; exit 1; }
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
# Without debug assertions redb fails later and differently on damage: the damage and
# power-loss suites run in a release build too (a repair aborted only there, session 23).
cargo test --release -p bitplace-engine --test projection_damage --test power_loss
node --test api/web/test/
# The HTTP contract against live dev and non-dev nodes (schemathesis, bounded in time).
scripts/schemathesis.sh "${CARGO_TARGET_DIR:-target}/debug"
(cd api/e2e && npm ci --no-audit --no-fund --silent)
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/e2e"
node api/e2e/browser.mjs "$target/debug" "$target/e2e"
