#!/usr/bin/env bash
# Build the Debian package: target/debian/herakles-node-exporter_VERSION_ARCH.deb
#
#   scripts/build-deb.sh                  cargo build --release, then package it
#   scripts/build-deb.sh --binary FILE    package an already built binary
#   scripts/build-deb.sh --out DIR        write the .deb (and its staging tree) in DIR
#
# The package's files come from the binary itself (`install --root STAGE
# --layout package`): the unit generated for the default config, the
# default config, /etc/default file, man page and completions. This script
# adds only what is Debian's: control files, maintainer scripts, copyright
# and changelog. Dependencies are computed by dpkg-shlibdeps from the
# binary's shared libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--binary FILE] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary=target/release/herakles-node-exporter
fi

name=herakles-node-exporter
maintainer="herakles-node-exporter authors <herakles-node-exporter@users.noreply.github.com>"
version=$("$binary" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(realpath "$out")/stage
rm -rf "$stage"
mkdir -p "$stage"

# The package ships a stripped copy; `install` copies the running binary.
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip --strip-unneeded -o "$stripped" "$binary"
chmod 755 "$stripped"
"$stripped" install --root "$stage" --layout package --no-service >/dev/null

doc="$stage/usr/share/doc/$name"
mkdir -p "$doc"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $name
Source: https://github.com/cansp-dev/herakles-node-exporter

Files: *
Copyright: 2026 The herakles-node-exporter authors
License: MIT or Apache-2.0

License: MIT
$(sed -e 's/^$/./' -e 's/^/ /' LICENSE-MIT)

License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
cat <<EOF | gzip -9n >"$doc/changelog.gz"
$name ($version) unstable; urgency=medium

  * Built from the herakles-node-exporter source tree.

 -- $maintainer  $date
EOF

# serde_norway carries a Rust translation of libyaml (unsafe-libyaml),
# linked in like every other crate; there is no shared libyaml to use instead.
mkdir -p "$stage/usr/share/lintian/overrides"
echo "$name: embedded-library libyaml [usr/bin/$name]" >"$stage/usr/share/lintian/overrides/$name"

mkdir -p "$stage/DEBIAN"
# dpkg-shlibdeps reads debian/control from the current directory.
shlibs=$(
  tmp=$(mktemp -d)
  mkdir "$tmp/debian"
  printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" >"$tmp/debian/control"
  cp "$stage/usr/bin/$name" "$tmp/bin"
  (cd "$tmp" && dpkg-shlibdeps -O bin 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
  rm -rf "$tmp"
)
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $shlibs, passwd
Section: net
Priority: optional
Homepage: https://github.com/cansp-dev/herakles-node-exporter
Description: Prometheus exporter for Linux processes and the host
 Exports per-process, per-group and whole-machine memory (RSS, PSS, USS),
 CPU, disk, filesystem and network metrics, and with eBPF per-process
 network and block I/O and TCP connection states.
 .
 The service runs as the system user herakles with only the capabilities
 its enabled features need. It is installed but not enabled: start it with
 systemctl enable --now herakles-node-exporter.
EOF
printf '/etc/herakles/herakles-node-exporter.yaml\n/etc/default/herakles-node-exporter\n' \
  >"$stage/DEBIAN/conffiles"

# The user is created here, never the service started: the operator enables
# it. The comment marks the user as ours, so purge removes only a user this
# package created.
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd herakles >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment herakles-node-exporter herakles
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
  fi
fi
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl --system stop herakles-node-exporter.service >/dev/null 2>&1 || true
  systemctl --system disable herakles-node-exporter.service >/dev/null 2>&1 || true
fi
EOF
cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
  if [ "$(getent passwd herakles | cut -d: -f5)" = herakles-node-exporter ]; then
    userdel herakles
  fi
fi
EOF
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)

deb="$out/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
