#!/usr/bin/env bash
# Development set-up: a .venv with the CPU build of torch (from this machine's wheel cache when present),
# dctq installed editable with its dev extras, and the libjpeg-turbo headers for the fast reader.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -f /usr/include/jpeglib.h ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq libjpeg62-turbo-dev) >/dev/null || echo "warning: libjpeg headers not installed; using the jpeglib reader" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU torch pin for development and CI: a looser requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
