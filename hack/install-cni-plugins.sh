#!/usr/bin/env bash
# Builds the real CNI plugins at the pinned containernetworking/plugins version into a project-local
# bin dir (default _output/cni/bin), and installs iptables from apt when it is missing (portmap and
# firewall need it). Idempotent and cached: a second run with the same version does nothing.
#
# Usage: hack/install-cni-plugins.sh [BIN_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
bin_dir=${1:-${CNI_BIN_DIR:-${root}/_output/cni/bin}}
stamp="${bin_dir}/.version"

if ! command -v iptables >/dev/null 2>&1; then
  echo "install-cni-plugins: iptables missing; installing it from apt" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
fi

missing=0
for p in "${CNI_PLUGINS[@]}"; do
  [[ -x "${bin_dir}/${p}" ]] || missing=1
done
if [[ ${missing} == 0 && -f "${stamp}" && "$(cat "${stamp}")" == "${CNI_PLUGINS_VERSION}" ]]; then
  exit 0
fi

echo "install-cni-plugins: building containernetworking/plugins ${CNI_PLUGINS_VERSION} into ${bin_dir}" >&2
mkdir -p "${bin_dir}"
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
pkgs=()
for p in "${CNI_PLUGINS[@]}"; do
  case "${p}" in
    host-local|static) pkgs+=("github.com/containernetworking/plugins/plugins/ipam/${p}@${CNI_PLUGINS_VERSION}") ;;
    bridge|loopback|ptp|macvlan) pkgs+=("github.com/containernetworking/plugins/plugins/main/${p}@${CNI_PLUGINS_VERSION}") ;;
    *) pkgs+=("github.com/containernetworking/plugins/plugins/meta/${p}@${CNI_PLUGINS_VERSION}") ;;
  esac
done
GOBIN="${tmp}" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "${pkgs[@]}"
for p in "${CNI_PLUGINS[@]}"; do
  install -m 0755 "${tmp}/${p}" "${bin_dir}/${p}"
done
echo "${CNI_PLUGINS_VERSION}" >"${stamp}"
