#!/usr/bin/env bash
# The main job on the embedded default: a temporary watch root with the
# example manifests, processed by the host until idle, no server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec target/release/deliver demo "$@"
