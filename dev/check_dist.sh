#!/usr/bin/env bash
# Release check: build the wheel and the sdist from the tracked files in a temporary directory, install the
# wheel into a fresh venv (CPU torch pin) and run `dctq demo` from it, then run the sdist's own test suite
# against that install. Usage: dev/check_dist.sh [WORKDIR]  (default: a new mktemp -d directory)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work/src"
(cd "$repo" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$work/src"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install -q build
"$work/build-venv/bin/python" -m build --outdir "$work/dist" "$work/src"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "torch==2.13.0"
wheel=$(ls "$work"/dist/dctq-*.whl)
"$work/venv/bin/pip" install -q "$wheel[dev]"
(cd "$work" && "$work/venv/bin/dctq" demo --out "$work/demo")
mkdir -p "$work/sdist" && tar -xzf "$work"/dist/dctq-*.tar.gz -C "$work/sdist"
(cd "$work"/sdist/dctq-* && OMP_NUM_THREADS=1 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider)
echo "dist check passed: $work"
