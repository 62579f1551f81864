#!/bin/sh
# Live comparison against llama.cpp: regenerates the reference outputs into a temporary folder
# (the stored fixtures stay as they are) and runs the reference test against them.
set -eu
SHAMMAH=${1:-build/shammah}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
REF_OUT="$TMP" sh tests/reference/make_fixtures.sh "$SHAMMAH"
SHAMMAH_REF_DIR="$TMP" "$(dirname "$SHAMMAH")/tests/test_reference"
