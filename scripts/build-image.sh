#!/usr/bin/env bash
# Build the container image herakles-node-exporter:VERSION with podman,
# FROM scratch: no base image is pulled.
#
#   scripts/build-image.sh                  cargo build --release, then the image
#   scripts/build-image.sh --binary FILE    an already built binary
#   scripts/build-image.sh --tag NAME       image name (default herakles-node-exporter:VERSION)
#
# The image holds the stripped binary, the shared libraries `ldd` says it
# loads (with the dynamic loader), copied from this host's Debian
# packages, and a passwd/group naming root and nobody. Nothing else: no
# shell, no package manager.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: $0 [--binary FILE] [--tag NAME]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary=target/release/herakles-node-exporter
fi
version=$("$binary" --version | awk '{print $2}')
tag=${tag:-herakles-node-exporter:$version}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
strip --strip-unneeded -o "$root/usr/bin/herakles-node-exporter" "$binary"
chmod 755 "$root/usr/bin/herakles-node-exporter"

# Every library ldd resolves, and the loader (the line without "=>"), at
# the path the binary asks for.
ldd "$binary" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

cp packaging/container/Containerfile "$ctx/Containerfile"
podman build --quiet --pull=never --tag "$tag" "$ctx" >/dev/null
echo "$tag"
