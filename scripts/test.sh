#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
