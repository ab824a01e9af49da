#!/usr/bin/env bash
# Brings up (or tears down) a local cluster of cnishim nodes: each node is a network namespace
# with its own `cnishim serve`, on an underlay bridge; see test/cluster/localcluster. Needs root.
# With --kubernetes, a Kubernetes v1.37.2 cluster instead: every node a network namespace with
# containerd (built with cnishim inside, or stock with --build stock), a kubelet and kube-proxy,
# node 0 holding the control plane, CoreDNS on top (test/framework.Cluster, docs/kubernetes.md).
# Its lifetime is that of a process (test/k8s's TestLocalKubernetesCluster) which down stops;
# <work dir>/cluster.env then says where the kubeconfig and the nodes' namespaces are.
#
# Usage:
#   hack/local-cluster.sh up [--nodes 3] [--network kindnet|flannel] [--ip-family ipv4|dual] [--work-dir DIR] [--prefix lc]
#   hack/local-cluster.sh up --kubernetes [--nodes 2] [--build cnishim|stock] [--work-dir DIR]
#   hack/local-cluster.sh down [--work-dir DIR] [--keep-logs]
# The default work dir is _output/local-cluster (up --kubernetes wants it missing or empty).
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
[[ ${cmd} == up || ${cmd} == down ]] || { sed -n '2,14p' "${BASH_SOURCE[0]}" >&2; exit 2; }
shift

work_dir="${root}/_output/local-cluster"
network=kindnet
kubernetes=0
k8s_nodes=2
k8s_build=cnishim
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubernetes) kubernetes=1; shift ;;
    --build) k8s_build=$2; shift 2 ;;
    --build=*) k8s_build=${1#*=}; shift ;;
    --network) network=$2; args+=("$1" "$2"); shift 2 ;;
    --network=*) network=${1#*=}; args+=("$1"); shift ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --work-dir=*) work_dir=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
work_dir=$(realpath -m "${work_dir}")

cd "${root}"

# k8s_up: the Kubernetes cluster, held by a test process of its own in the background.
k8s_up() {
  local i pid
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      --nodes) k8s_nodes=${args[i + 1]:-}; i=$((i + 1)) ;;
      --nodes=*) k8s_nodes=${args[i]#*=} ;;
      *) echo "local-cluster.sh: up --kubernetes takes --nodes, --build and --work-dir, not ${args[i]}" >&2; exit 2 ;;
    esac
  done
  if [[ -e ${work_dir}/k8s.pid ]]; then
    echo "local-cluster.sh: a cluster is up in ${work_dir} (down first)" >&2
    exit 1
  fi
  if [[ -d ${work_dir} ]] && [[ -n "$(ls -A "${work_dir}")" ]]; then
    echo "local-cluster.sh: the work dir ${work_dir} is not empty" >&2
    exit 1
  fi
  make --no-print-directory deps build deps-containerd deps-kubelet deps-k8s >&2
  go test -c -tags k8s_e2e -o "${root}/_output/bin/k8s.test" ./test/k8s
  mkdir -p "${work_dir}"
  # In its package dir, as go test runs it; setsid: it outlives this script and its session. The
  # subshell execs it, so that $! is its pid and nothing else holds this script's output open.
  (
    cd test/k8s
    CNISHIM_REQUIRE_ROOT_TESTS=1 CNISHIM_K8S_LOCAL_DIR="${work_dir}" CNISHIM_K8S_LOCAL_NODES="${k8s_nodes}" \
      CNISHIM_K8S_LOCAL_BUILD="${k8s_build}" exec setsid "${root}/_output/bin/k8s.test" \
      -test.run '^TestLocalKubernetesCluster$' -test.v -test.timeout 0 >"${work_dir}/cluster.log" 2>&1 </dev/null
  ) &
  pid=$!
  echo "${pid}" >"${work_dir}/k8s.pid"
  for ((i = 0; i < 600; i++)); do
    if [[ -f ${work_dir}/cluster.env ]]; then
      cat "${work_dir}/cluster.env"
      grep 'kubectl:' "${work_dir}/cluster.log" >&2 || true
      return 0
    fi
    if ! kill -0 "${pid}" 2>/dev/null; then
      # It exited, its cleanup done: nothing is up.
      echo "local-cluster.sh: the cluster did not come up; its log, ${work_dir}/cluster.log:" >&2
      tail -n 60 "${work_dir}/cluster.log" >&2
      rm -f "${work_dir}/k8s.pid"
      exit 1
    fi
    sleep 0.5
  done
  echo "local-cluster.sh: the cluster did not come up in 5 minutes; taking it down" >&2
  k8s_down
  exit 1
}

# k8s_down: stops the process holding the cluster (the k8s.test that k8s.pid names, and no other
# process that may have that pid now), which takes the cluster down, waits for it, and checks
# that its cleanup said ok. Then removes the files up made (the log too, unless --keep-logs) and
# the work dir if that leaves it empty.
k8s_down() {
  local pid i keep=0
  for i in "${args[@]}"; do
    [[ ${i} == --keep-logs ]] && keep=1
  done
  pid=$(cat "${work_dir}/k8s.pid")
  if [[ "$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)" == *k8s.test*TestLocalKubernetesCluster* ]]; then
    kill -TERM "${pid}"
    for ((i = 0; i < 600; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "${pid}" 2>/dev/null; then
      echo "local-cluster.sh: the cluster's process ${pid} did not exit in 5 minutes; log: ${work_dir}/cluster.log" >&2
      exit 1
    fi
  else
    echo "local-cluster.sh: the cluster's process ${pid} is not running" >&2
  fi
  if [[ "$(cat "${work_dir}/cluster.down" 2>/dev/null)" != ok ]]; then
    echo "local-cluster.sh: taking the cluster down failed, or never ran (${work_dir}/cluster.down says" \
      "\"$(cat "${work_dir}/cluster.down" 2>/dev/null)\"); its log, ${work_dir}/cluster.log:" >&2
    tail -n 60 "${work_dir}/cluster.log" >&2
    exit 1
  fi
  rm -f "${work_dir}/k8s.pid" "${work_dir}/cluster.env" "${work_dir}/cluster.down"
  ((keep)) || rm -f "${work_dir}/cluster.log"
  rmdir "${work_dir}" 2>/dev/null || true
}

if [[ ${cmd} == up && ${kubernetes} == 1 ]]; then
  k8s_up
  exit 0
fi
if [[ ${cmd} == down && -f ${work_dir}/k8s.pid ]]; then
  k8s_down
  exit 0
fi
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
