#!/usr/bin/env bash
# The whole test suite: installs and builds what it needs, then runs every
# test of the workspace against the real binaries and plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --release --workspace --locked
