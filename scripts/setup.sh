#!/usr/bin/env bash
# Installs what deliver needs on Debian 12 (FFmpeg libraries and CLI, the
# bindgen toolchain, Chromium for the report tests) and builds the workspace
# in release. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the report tests load report.html in a real headless browser.
# rsync: the watch-folder tests copy files in with `rsync --inplace`.
# mesa-vulkan-drivers + libvulkan1: lavapipe, the software Vulkan the wgpu
# renderer is tested on (the driver is only a Recommends of the loader).
# fonts-dejavu-core: the default font of titles.
# time: GNU time (/usr/bin/time), which the benchmarks use for each child's
#   CPU time and peak RSS.
# python3-venv: the OpenTimelineIO tests write timelines with the
# `opentimelineio` package (installed from PyPI into a venv below).
PACKAGES=(
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  pkg-config clang nasm ffmpeg chromium rsync
  mesa-vulkan-drivers libvulkan1 fonts-dejavu-core python3-venv
  time
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# One profile for everything (binaries, plugins, test fixtures): encoders and
# pixel loops are far too slow unoptimized.
cargo build --release --workspace --locked

# OpenTimelineIO, for the tests that write timelines with the reference
# implementation (tests/otio/*.py, run by tests/tests/otio.rs).
if ! target/otio-venv/bin/python -c "import opentimelineio" 2>/dev/null; then
  python3 -m venv target/otio-venv
  target/otio-venv/bin/pip install -q opentimelineio
fi
