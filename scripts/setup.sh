#!/usr/bin/env bash
# Install what building and testing herakles-node-exporter needs on a fresh
# Debian machine. Idempotent: a second run installs nothing.
#
#   promtool, prometheus      (package prometheus)  lint our exposition, check and
#                                                   unit-test monitoring/ rules, and a
#                                                   live server evaluates every rule and
#                                                   dashboard query in tests
#   prometheus-node-exporter                        the peer our values are compared with;
#                                                   tests/web.rs serves the same web config
#                                                   file with it (format compatibility)
#   ss                        (package iproute2)    cross-checks TCP state counts
#   curl                                            benchmark and smoke scripts; an HTTPS
#                                                   client in tests/web.rs
#   openssl                                         tests/web.rs: s_client offers TLS 1.1
#                                                   and 1.2 to prove which the server refuses;
#                                                   tests/spec_configs.rs makes the
#                                                   certificate the spec's TLS blocks name
#   clang, libelf-dev, zlib1g-dev, pkg-config       build the eBPF programs (feature
#                                                   `ebpf`, on by default) and the
#                                                   libbpf that loads them
#   bpftool                                         tests compare our eBPF inventory
#                                                   with it (not a build need: the
#                                                   generated bpf/vmlinux.h is committed)
#   dpkg-dev, lintian                               scripts/build-deb.sh computes the
#                                                   package's dependencies (dpkg-shlibdeps);
#                                                   tests/package.rs lints the .deb
#   debootstrap                                     tests/package.rs installs the .deb into
#                                                   a clean Debian root it builds
#   podman                                          scripts/build-image.sh builds the image
#                                                   FROM scratch; tests/container.rs runs it
#   runc                                            the OCI runtime that tests/container.rs
#                                                   runs it with: podman's default, crun,
#                                                   refuses hybrid cgroup hosts like this one
#   libcap2-bin, util-linux                         capsh/setpriv start the exporter with
#                                                   exactly the unit's capabilities
#   strace                                          tests/install.rs lists the system calls
#                                                   the exporter makes, against the unit's filter
#   systemd                                         systemd-analyze verifies the unit and
#                                                   scores its exposure (no systemd needs
#                                                   to be running)
#   python3 -m venv target/venv (PyPI, pinned):    tests/package.rs validates the
#     kubernetes-validate                           Kubernetes manifests offline: the API
#     cloudcoil.models.prometheus_operator          schemas ship inside these packages
set -euo pipefail
cd "$(dirname "$0")/.."

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v clang >/dev/null 2>&1 || need+=(clang)
for pkg in libelf-dev zlib1g-dev pkg-config bpftool dpkg-dev lintian debootstrap podman runc \
  libcap2-bin util-linux systemd; do
  installed "$pkg" || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  # Debian starts daemons from package scripts; we only want their binaries,
  # never a node_exporter or Prometheus server running in the background.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

# The Kubernetes schema validators, from PyPI, in a venv of the project's
# own (never the system Python). Versions pinned so the schemas a test
# validates against do not change under us.
venv=target/venv
k8s_pkgs=(kubernetes-validate==1.37.0 cloudcoil.models.prometheus_operator==0.80.1.0)
if ! "$venv/bin/python" -c 'import kubernetes_validate, cloudcoil.models.prometheus_operator' \
  >/dev/null 2>&1; then
  echo "setup: installing ${k8s_pkgs[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${k8s_pkgs[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
echo "setup: ok"
