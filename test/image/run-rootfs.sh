#!/usr/bin/env bash
# Runs a command from an unpacked image's root file system the way a container runtime would, with
# nothing from the host: run it as root inside `unshare --mount --pid --fork --propagation private`
# (the mounts below vanish with the namespace). The root is bind-mounted read-only, the volume
# DATA_DIR is bind-mounted read-write at /data, a tmpfs is mounted at /tmp, a fresh /proc for the
# new PID namespace, a read-only /sys, and a /dev holding only null, zero, full, random and
# urandom. Then, with exactly the environment in ENV_FILE (one NAME=value a line), the command runs
# chrooted into the root, in CWD, as UID:GID with no supplementary groups (so no capabilities).
# The network is the host's: the test reaches the engine, and the engine a registry, on loopback.
# Usage: run-rootfs.sh ROOTFS DATA_DIR UID GID CWD ENV_FILE [--mount HOST_PATH:IMAGE_PATH]... -- COMMAND...
set -euo pipefail
root=$1 data=$2 uid=$3 gid=$4 cwd=$5 env_file=$6
shift 6
extra=()
while [ "${1:-}" = --mount ]; do
  extra+=("$2")
  shift 2
done
[ "${1:-}" = -- ] || { echo "run-rootfs: expected -- before the command" >&2; exit 2; }
shift

mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$data" "$root/data"
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount -t tmpfs -o mode=755,size=64k,nosuid tmpfs "$root/dev"
for dev in null zero full random urandom; do
  touch "$root/dev/$dev"
  mount --bind "/dev/$dev" "$root/dev/$dev"
done
mount -o remount,ro,bind "$root/dev"
for pair in ${extra[@]+"${extra[@]}"}; do
  mount --bind -o ro "${pair%%:*}" "$root${pair#*:}"
  mount -o remount,bind,ro "$root${pair#*:}"
done

unshare=$(command -v unshare)
mapfile -t vars <"$env_file"
exec env -i "${vars[@]}" "$unshare" --root="$root" --wd="$cwd" --setgid="$gid" --setuid="$uid" -- "$@"
