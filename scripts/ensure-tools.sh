#!/usr/bin/env bash
# Makes sure the tools the project needs are installed (Debian packages only: no rustup, no
# crates.io, no downloads of prebuilt binaries).
#   - building the examples: clang + wasm-ld + wasi-libc + the wasm32 compiler-rt builtins (C),
#     Debian's rustc + the wasm32 Rust std (Rust), wabt/binaryen (inspecting, stripping)
#   - tests: umoci (OCI layouts), skopeo + docker-registry + htpasswd (a local registry, with auth)
#   - tests: postgresql (initdb/pg_ctl run by test/support/postgres.ts, as the `postgres` user it creates)
#   - cluster tests and bench: haproxy (a real load balancer in front of several engines)
#   - benchmarks: wrk, hyperfine; tests also run curl (the README lines) and openssl (a token issuer key)
#   - the engine's image (npm run image): Debian's CA bundle goes into it (ca-certificates)
# Quiet and fast (builtins only) when everything is present. When something is missing: as root it
# installs the packages with apt-get; otherwise it prints the exact command and exits 1.
set -euo pipefail

PACKAGES=(docker-registry skopeo umoci wabt binaryen clang lld wasi-libc libclang-rt-dev-wasm32
  rustc libstd-rust-dev-wasm32 apache2-utils wrk hyperfine curl openssl
  ca-certificates postgresql haproxy)
PACKAGES+=(prometheus)  # promtool, at /usr/bin/promtool: tests check /metrics with `promtool check metrics`

# Commands looked up on PATH, and files (globs allowed) that must exist.
COMMANDS=(clang wasm-ld umoci skopeo docker-registry wat2wasm wasm-objdump wasm-strip wasm-opt
  htpasswd wrk hyperfine curl openssl)
COMMANDS+=(promtool)
FILES=(
  /usr/bin/rustc                                   # Debian's rustc (never ~/.cargo/bin/rustc)
  /usr/lib/rustlib/wasm32-unknown-unknown/lib      # Rust std for wasm32-unknown-unknown
  /usr/lib/rustlib/wasm32-wasi/lib                 # Rust std for wasm32-wasi
  /usr/include/wasm32-wasi/stdio.h                 # wasi-libc headers
  /usr/lib/wasm32-wasi/libc.a                      # wasi-libc
  '/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a'  # compiler-rt for wasm32
  /etc/ssl/certs/ca-certificates.crt               # Debian's CA bundle, copied into the engine's image
  '/usr/lib/postgresql/*/bin/pg_ctl'               # PostgreSQL server (tests of the PostgreSQL store)
  /usr/sbin/haproxy                                # haproxy (in /usr/sbin, not on every user's PATH)
)

missing_list() {
  local c f
  for c in "${COMMANDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || printf '%s\n' "$c"
  done
  for f in "${FILES[@]}"; do
    # Unquoted on purpose so that a glob expands; compgen -G tells whether it matched anything.
    compgen -G "$f" >/dev/null || printf '%s\n' "$f"
  done
}

missing=$(missing_list)
[ -z "$missing" ] && exit 0

echo "ensure-tools: missing: $(echo $missing)" >&2
install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-tools: not root; install them with:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi

echo "ensure-tools: installing: ${PACKAGES[*]}" >&2
apt-get update >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" >&2

missing=$(missing_list)
if [ -n "$missing" ]; then
  echo "ensure-tools: still missing after apt-get install: $(echo $missing)" >&2
  exit 1
fi
echo "ensure-tools: all tools present" >&2
