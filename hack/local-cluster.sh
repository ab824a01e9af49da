#!/usr/bin/env bash
# Brings up (or tears down) a local cluster of cnishim nodes: each node is a network namespace
# with its own `cnishim serve`, on an underlay bridge; see test/cluster/localcluster. Needs root.
#
# Usage:
#   hack/local-cluster.sh up [--nodes 3] [--network kindnet|flannel] [--ip-family ipv4|dual] [--work-dir DIR] [--prefix lc]
#   hack/local-cluster.sh down [--work-dir DIR] [--keep-logs]
# The default work dir is _output/local-cluster.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
[[ ${cmd} == up || ${cmd} == down ]] || { sed -n '2,8p' "${BASH_SOURCE[0]}" >&2; exit 2; }
shift

work_dir="${root}/_output/local-cluster"
network=kindnet
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --network) network=$2; args+=("$1" "$2"); shift 2 ;;
    --network=*) network=${1#*=}; args+=("$1"); shift ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --work-dir=*) work_dir=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
work_dir=$(realpath -m "${work_dir}")

cd "${root}"
bin="${root}/_output/bin"
if [[ ${cmd} == up ]]; then
  make --no-print-directory deps build >&2
  args+=(--cnishim "${bin}/cnishim" --cni-bin-dir "${root}/_output/cni/bin")
  if [[ ${network} == flannel ]]; then
    # flanneld, etcd and the flannel plugin: several CPU-minutes to build the first time.
    hack/install-flannel.sh "${root}/_output/flannel/bin" >&2
    args+=(--flannel-bin-dir "${root}/_output/flannel/bin")
  fi
fi
mkdir -p "${bin}"
CGO_ENABLED=0 go build -o "${bin}/local-cluster" ./test/cluster/cmd/local-cluster
CGO_ENABLED=0 go build -o "${bin}/netexec" ./test/cluster/netexec
exec "${bin}/local-cluster" "${cmd}" --work-dir "${work_dir}" "${args[@]}"
