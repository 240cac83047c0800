#!/usr/bin/env bash
# Packs one .wasm file as a container image in an OCI image layout, the daemon-less equivalent of
# a Dockerfile `FROM scratch` + `ADD f.wasm /` with platform wasi/wasm.
# Usage: make-oci-layout.sh FILE.wasm LAYOUT_DIR [TAG]   (TAG defaults to latest)
# The layout is rebuilt from scratch each time so a stale image never survives.
set -euo pipefail
wasm=$1 layout=$2 tag=${3:-latest}
[ -f "$wasm" ] || { echo "make-oci-layout: no such file: $wasm" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --rootless --image "$layout:$tag" "$work/bundle" >/dev/null
cp "$wasm" "$work/bundle/rootfs/$(basename "$wasm")"
umoci repack --image "$layout:$tag" "$work/bundle"
umoci config --image "$layout:$tag" --os wasi --architecture wasm
umoci gc --layout "$layout"
