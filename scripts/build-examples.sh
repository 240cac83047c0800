#!/usr/bin/env bash
# Builds the example functions from source and packs each one as an OCI image layout:
#   examples/build/wasm/NAME.wasm   the module
#   examples/build/oci/NAME         an OCI image layout, tag `latest` (deploy as oci:PATH:latest)
# Usage: scripts/build-examples.sh [-f|--force] [NAME...]   (default: every example)
# Incremental: an example is skipped when its outputs are newer than its sources, this script and
# scripts/make-oci-layout.sh. Examples build in parallel; a failure names the example and shows
# its compiler output. Toolchains are Debian's (see scripts/ensure-tools.sh): clang for C,
# /usr/bin/rustc (always by full path, never a rustup one) for single-file Rust crates, no cargo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/ensure-tools.sh

# NAME  KIND  MAIN-SOURCE  [OTHER-SOURCES...]   (paths relative to the repo root)
# KIND: rust-wasi    Rust WASI command                    (SPEC §3a)
#       rust-string  Rust cdylib, string ABI              (SPEC §3b)
#       c-wasi       C WASI command (wasi-libc)           (SPEC §3a)
#       c-numeric    C, no libc, no WASI, numeric ABI     (SPEC §3c)
EXAMPLES=(
  "hello                rust-wasi    examples/hello/main.rs"
  "authentication       rust-string  examples/authentication/lib.rs       examples/common/auth.rs"
  "authentication-wasi  rust-wasi    examples/authentication-wasi/main.rs  examples/common/auth.rs"
  "echo-string          rust-string  examples/echo-string/lib.rs"
  "fibonacci            c-wasi       examples/fibonacci/fibonacci.c"
  "add-one              c-numeric    examples/add-one/add-one.c"
  "gcd                  c-numeric    examples/gcd/gcd.c"
)

RUSTC=/usr/bin/rustc
RUST_FLAGS=(--edition 2021 -O -C debuginfo=0 -C strip=debuginfo)
# String-ABI modules: 16 initial pages of memory, as the historical `authentication` module had
# (the engine grows one more page for the input: 17). rustc's wasm linker puts the stack first, so
# a 960 KiB stack leaves room for the static data below 1 MiB.
RUST_STRING_FLAGS=(-C link-arg=-zstack-size=983040 -C link-arg=--initial-memory=1048576)
C_FLAGS=(-O2 -Wall -Wextra -Wl,--strip-debug)

out=examples/build
force=0
selected=()
for a in "$@"; do
  case $a in
    -f | --force) force=1 ;;
    -h | --help) sed -n "2,9p" "$root/scripts/build-examples.sh"; exit 0 ;;
    *) selected+=("$a") ;;
  esac
done

# build_wasm NAME KIND SRC TARGET_FILE: compiles one example.
build_wasm() {
  local name=$1 kind=$2 src=$3 dest=$4
  local crate=${name//-/_}
  case $kind in
    rust-wasi)
      "$RUSTC" "${RUST_FLAGS[@]}" --crate-name "$crate" --crate-type bin --target wasm32-wasi \
        "$src" -o "$dest" ;;
    rust-string)
      # RUSTC_BOOTSTRAP=1: these crates use the unstable `extern "wasm"` ABI (feature wasm_abi),
      # the only way in Rust 1.63 to export `(i32, i32) -> (i32, i32)`: stable 1.63 has no
      # multi-value C ABI (extern "C" returns a struct through a hidden pointer parameter).
      RUSTC_BOOTSTRAP=1 "$RUSTC" "${RUST_FLAGS[@]}" "${RUST_STRING_FLAGS[@]}" --crate-name "$crate" \
        --crate-type cdylib --target wasm32-unknown-unknown "$src" -o "$dest" ;;
    c-wasi)
      clang --target=wasm32-wasi --sysroot=/usr "${C_FLAGS[@]}" "$src" -o "$dest" ;;
    c-numeric)
      clang --target=wasm32-unknown-unknown -nostdlib -Wl,--no-entry "${C_FLAGS[@]}" "$src" -o "$dest" ;;
    *)
      echo "unknown kind $kind" >&2; return 1 ;;
  esac
}

# build_one NAME KIND SRC...: compiles and packs one example into temporary files, then moves the
# results in place, so an interrupted or failed build never leaves outputs that look up to date.
build_one() {
  local name=$1 kind=$2 src=$3
  local wasm=$out/wasm/$name.wasm layout=$out/oci/$name
  local tmp_wasm=$out/wasm/.$name.tmp.wasm tmp_dir=$out/oci/.$name.tmp
  rm -rf "$tmp_wasm" "$tmp_dir"
  build_wasm "$name" "$kind" "$src" "$tmp_wasm"
  # The layout's file is named NAME.wasm, so pack from a directory holding it under that name.
  mkdir -p "$tmp_dir"
  cp "$tmp_wasm" "$tmp_dir/$name.wasm"
  bash scripts/make-oci-layout.sh "$tmp_dir/$name.wasm" "$tmp_dir/layout" latest
  mv -f "$tmp_wasm" "$wasm"
  rm -rf "$layout"
  mv "$tmp_dir/layout" "$layout"
  rm -rf "$tmp_dir"
  # Mark the layout as produced after the module.
  touch "$layout/index.json"
}

# up_to_date NAME SRC...: whether both outputs are newer than every input.
up_to_date() {
  local name=$1; shift
  local wasm=$out/wasm/$name.wasm index=$out/oci/$name/index.json dep
  [ -f "$wasm" ] && [ -f "$index" ] || return 1
  [ "$wasm" -nt "$index" ] && return 1
  for dep in "$@" scripts/build-examples.sh scripts/make-oci-layout.sh; do
    [ "$wasm" -nt "$dep" ] || return 1
  done
  return 0
}

mkdir -p "$out/wasm" "$out/oci" "$out/logs"
# One build at a time per checkout (two `npm test` runs may start together); the second one waits
# and then finds everything up to date.
exec 9>"$out/.lock"
flock 9
known=" "
for entry in "${EXAMPLES[@]}"; do read -r name _ <<<"$entry"; known+="$name "; done
for s in "${selected[@]}"; do
  [[ $known == *" $s "* ]] || { echo "build-examples: unknown example '$s' (known:$known)" >&2; exit 2; }
done

started=$(date +%s%N)
pids=() names=() skipped=0
for entry in "${EXAMPLES[@]}"; do
  read -r name kind src deps <<<"$entry"
  if [ ${#selected[@]} -gt 0 ] && [[ " ${selected[*]} " != *" $name "* ]]; then continue; fi
  # shellcheck disable=SC2086 # deps is a space-separated list
  if [ $force -eq 0 ] && up_to_date "$name" "$src" $deps; then
    skipped=$((skipped + 1))
    continue
  fi
  build_one "$name" "$kind" "$src" >"$out/logs/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
done

failed=()
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    printf 'build-examples: built %-20s %8d bytes\n' "${names[$i]}" "$(stat -c %s "$out/wasm/${names[$i]}.wasm")"
  else
    failed+=("${names[$i]}")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  for name in "${failed[@]}"; do
    echo "build-examples: FAILED to build example '$name'; its output ($out/logs/$name.log):" >&2
    sed 's/^/  | /' "$out/logs/$name.log" >&2
  done
  echo "build-examples: FAILED: ${failed[*]}" >&2
  exit 1
fi

ms=$(( ($(date +%s%N) - started) / 1000000 ))
if [ ${#pids[@]} -gt 0 ]; then
  echo "build-examples: ${#pids[@]} built, $skipped up to date, in ${ms} ms -> $out/{wasm,oci}"
else
  echo "build-examples: $skipped examples up to date ($out/{wasm,oci})"
fi
