#!/usr/bin/env bash
# The side-by-side benchmark (make bench): cnishim's Plugin against containerd's go-cni and raw
# libcni (the floor) over the real CNI plugins in real network namespaces, the admission
# storms, the slow-IPAM storms and the mixed storm, the multi-network scenario, the
# micro-benchmarks, the memory figure and one node at 1,000 pods (restart, list and status
# latency). Needs root: it creates network namespaces, bridges (cnibench0, 10.199.0.0/16;
# cnibslow0, 10.193.0.0/16, the slow-IPAM network; cnibmn0-2, 10.194-196.0.0/16; on this
# machine only) and iptables rules, and removes them all, also when interrupted. No packet
# leaves the machine.
#
# The slow IPAM is the cnitest test plugin (test/plugins/cnitest) as the IPAM of a bridge
# network: it waits on ADD, spending no CPU (an IPAM asking a server), then hands the
# allocation to the real host-local. The slow-IPAM storms put every pod on that network alone
# and compare cnishim's default ADD bound with ADD unbounded, the fixed CPU bound and go-cni;
# the mixed storm puts every pod on the benchmark network and every other pod on the slow
# network too, and compares the default with fixed ADD bounds. The fixed CPU bound with a 2s
# wait and 400 pods alone takes about 400 s: the full matrix adds most of an hour.
#
# Writes the markdown tables to stdout and to ${BENCH_OUT}/benchmarks-bench.md, the raw
# figures to ${BENCH_OUT}/results.json (cnibench report -in rebuilds tables and plots from
# it), and the plots to docs/ (to ${BENCH_OUT} in quick mode, so smoke runs never replace the
# published ones).
#
# Environment:
#   BENCH_QUICK=1           smoke run: tiny scenarios, one round, a short micro-benchmark run
#                           (the sizes and waits below are then ignored)
#   BENCH_ROUNDS            rounds of the real-plugin scenarios (default 3)
#   BENCH_EXTRA_ROUNDS      rounds of the storms outside them, of the ADD bound sweep and of the
#                           slow-IPAM and mixed storms (default 1)
#   BENCH_SCENARIOS         real-plugin scenarios, PODSxCALLERS (default 100x1,200x8,400x32)
#   BENCH_STORMS            admission storms (default 200x8,200x32,400x8,400x32)
#   BENCH_SWEEP             storms on which fixed ADD bounds are swept (default 200x32-hp)
#   BENCH_SWEEP_MAX         largest fixed ADD bound (default 8)
#   BENCH_MICRO_COUNT       go test -count of the micro-benchmarks (default 6, for benchstat)
#   BENCH_SLOW_STORMS       slow-IPAM storms, PODSxCALLERS, no hostPort unless +hp
#                           (default 110x8,110x32,110x110,400x8,400x32,400x110; "" for none)
#   BENCH_SLOW_WAITS        IPAM waits of the slow-IPAM storms (default 500ms,2s)
#   BENCH_MIXED_STORMS      mixed storms, same syntax (default 400x32; "" for none)
#   BENCH_MIXED_WAITS       IPAM waits of the mixed storms (default 500ms,2s)
#   BENCH_MIXED_BOUNDS      fixed ADD bounds of the mixed storms, 0 unbounded
#                           (default 2,4,8,16,32,64,0)
#   BENCH_MULTINET_PODS     pods per variant of the multi-network scenario (default 50; quick 5)
#   BENCH_ONLY=multinet     run only the multi-network scenarios (tables, with where the
#                           set-up's wall time goes, to stdout and ${BENCH_OUT}/multinet.md)
#   BENCH_ONLY=slow-ipam    run only the slow-IPAM storms and the mixed storm (after the
#                           harness tests): tables to stdout and ${BENCH_OUT}/slow-ipam.md, raw
#                           figures to ${BENCH_OUT}/slow-ipam.json, the plot to docs/ (quick:
#                           ${BENCH_OUT}). With BENCH_QUICK=1: 10 pods, a 100ms wait.
#   BENCH_ONLY=containerd   run only the containerd storms: RunPodSandbox through containerd's
#                           CRI, stock against the drop-in build, 1/8/32 callers on the bench
#                           and the slow-IPAM chains, and containerd's RSS at 500 pods (table
#                           to ${BENCH_OUT}/containerd.md)
#   BENCH_CONTAINERD_ROUNDS rounds of the containerd storms (default 3)
#   BENCH_CONTAINERD_PODS   pods per containerd storm (default 64; 16 with one caller)
#   BENCH_CONTAINERD_RSS_PODS  pods of the containerd memory figure (default 500)
#   BENCH_ONLY=kubelet      run only the kubelet storms: 1, 30 and 60 static pods written at
#                           once, to all Ready by the kubelet's own status, and their removal
#                           to IPs released, a kubelet on stock containerd against one on
#                           containerd with cnishim (table to ${BENCH_OUT}/kubelet.md)
#   BENCH_ONLY=k8s          run only the Kubernetes scale run: a Deployment on a 3-node cluster
#                           scaled to BENCH_K8S_PODS pods per node (default 100) and back, to
#                           all Ready and to IPs released, a cluster on stock containerd
#                           against one on containerd with cnishim (table to
#                           ${BENCH_OUT}/k8s.md; needs make deps-k8s; not part of the full run)
#   BENCH_K8S_ROUNDS        rounds of the Kubernetes scale run (default 3)
#   BENCH_KUBELET_ROUNDS    rounds of the kubelet storms (default 3)
#   BENCH_KUBELET_PODS      pod counts of the kubelet storms (default "1 30 60")
#   BENCH_SKIP_TESTS=1      skip the benchmark's own tests (fairness of inputs, leak checks)
#   BENCH_OUT               output directory (default _output/bench)
#   CNI_BIN_DIR             real CNI plugins (default _output/cni/bin)
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
# shellcheck source=hack/versions.sh
source hack/versions.sh

bin_dir=${CNI_BIN_DIR:-${root}/_output/cni/bin}
out=${BENCH_OUT:-${root}/_output/bench}
quick=${BENCH_QUICK:-0}

if [[ $(id -u) != 0 ]]; then
  echo "bench: must run as root (network namespaces, a bridge, iptables rules)" >&2
  exit 1
fi
if ! grep -q "github.com/containerd/go-cni ${GO_CNI_VERSION}\$" test/bench/go.mod; then
  echo "bench: test/bench/go.mod does not require go-cni ${GO_CNI_VERSION} (hack/versions.sh)" >&2
  echo "  fix: (cd test/bench && go get github.com/containerd/go-cni@${GO_CNI_VERSION} && go mod tidy)" >&2
  exit 1
fi

hack/install-cni-plugins.sh "${bin_dir}"
mkdir -p "${out}"
export CNISHIM_TEST_CNI_BIN=${bin_dir}

echo "bench: building test/bench/cmd/cnibench" >&2
(cd test/bench && CGO_ENABLED=0 go build -o "${out}/cnibench" ./cmd/cnibench)

multinet_pods=${BENCH_MULTINET_PODS:-50}
[[ ${quick} == 1 ]] && multinet_pods=${BENCH_MULTINET_PODS:-5}
multinet() {
  echo "bench: a pod on three networks, ${multinet_pods} pods per variant" >&2
  "${out}/cnibench" multinet -breakdown -cni-bin-dir "${bin_dir}" -pods "${multinet_pods}" -markdown "${out}/multinet.md" >&2
}
# runtime_storms NAME TAG TEST PKG [VAR=VALUE...]: runs the root test TEST of PKG, behind build
# tag TAG, against the runtimes make deps-containerd (and deps-kubelet) built, with the knobs
# given; its table goes to ${out}/NAME.md, the runtimes' whole logs to ${out}/NAME-logs.
runtime_storms() {
  local name=$1 tag=$2 test=$3 pkg=$4
  shift 4
  env CNISHIM_REQUIRE_ROOT_TESTS=1 CNISHIM_TEST_CONTAINERD="${CNISHIM_TEST_CONTAINERD:-${root}/_output/containerd}" \
    CNISHIM_TEST_KUBELET="${CNISHIM_TEST_KUBELET:-${root}/_output/kubernetes/bin/kubelet}" \
    CNISHIM_TEST_CRICTL="${CNISHIM_TEST_CRICTL:-${root}/_output/bin/crictl}" CNISHIM_BENCH_OUT="${out}" \
    CNISHIM_TEST_LOG_DIR="${out}/${name}-logs" "$@" \
    go test -count=1 -timeout 60m -v -tags "${tag}" -run "^${test}\$" "${pkg}" >&2
  echo "bench: ${name} storm table in ${out}/${name}.md" >&2
}
# The containerd storms: RunPodSandbox through containerd's CRI, stock containerd against
# containerd built with the go-cni drop-in (test/containerd/bench_test.go), and containerd's
# memory at 500 pods. Needs make deps-containerd.
containerd_storms() {
  echo "bench: containerd storms (stock containerd against containerd with cnishim)" >&2
  if [[ ${quick} == 1 ]]; then
    set -- CNISHIM_BENCH_ROUNDS=1 CNISHIM_BENCH_STORM_PODS=8 CNISHIM_BENCH_RSS_PODS=20
  else
    set -- CNISHIM_BENCH_ROUNDS="${BENCH_CONTAINERD_ROUNDS:-3}" CNISHIM_BENCH_STORM_PODS="${BENCH_CONTAINERD_PODS:-64}" CNISHIM_BENCH_RSS_PODS="${BENCH_CONTAINERD_RSS_PODS:-500}"
  fi
  runtime_storms containerd containerd_bench TestContainerdStorms ./test/containerd/ "$@"
}
# The kubelet storms: static pods through a standalone kubelet on each containerd build
# (test/kubelet/bench_test.go). Needs make deps-containerd deps-kubelet.
kubelet_storms() {
  echo "bench: kubelet storms (a kubelet on stock containerd against one on containerd with cnishim)" >&2
  if [[ ${quick} == 1 ]]; then
    set -- CNISHIM_BENCH_ROUNDS=1 CNISHIM_BENCH_KUBELET_PODS="1 5"
  else
    set -- CNISHIM_BENCH_ROUNDS="${BENCH_KUBELET_ROUNDS:-3}" CNISHIM_BENCH_KUBELET_PODS="${BENCH_KUBELET_PODS:-1 30 60}"
  fi
  runtime_storms kubelet kubelet_bench TestKubeletStorms ./test/kubelet/ "$@"
}
if [[ ${BENCH_ONLY:-} == containerd ]]; then
  containerd_storms
  exit 0
fi
if [[ ${BENCH_ONLY:-} == kubelet ]]; then
  kubelet_storms
  exit 0
fi
if [[ ${BENCH_ONLY:-} == k8s ]]; then
  echo "bench: Kubernetes scale (a cluster on stock containerd against one on containerd with cnishim)" >&2
  runtime_storms k8s k8s_bench TestDeploymentScale ./test/k8s/ \
    CNISHIM_K8S_SCALE_ROUNDS="${BENCH_K8S_ROUNDS:-3}" CNISHIM_K8S_SCALE_PODS="${BENCH_K8S_PODS:-100}"
  exit 0
fi

if [[ ${BENCH_ONLY:-} == multinet ]]; then
  multinet
  cat "${out}/multinet.md"
  exit 0
fi

if [[ ${BENCH_SKIP_TESTS:-0} != 1 ]]; then
  echo "bench: checking the harness (same plugin input from all three, leak checks)" >&2
  (cd test/bench && go test -race -count=1 ./...) >&2
fi

echo "bench: building the slow IPAM (test/plugins/cnitest)" >&2
CGO_ENABLED=0 go build -o "${out}/cnitest" ./test/plugins/cnitest
slow_args=(
  -cnitest "${out}/cnitest"
  -slow-storms "${BENCH_SLOW_STORMS-110x8,110x32,110x110,400x8,400x32,400x110}"
  -slow-waits "${BENCH_SLOW_WAITS:-500ms,2s}"
  -mixed "${BENCH_MIXED_STORMS-400x32}"
  -mixed-waits "${BENCH_MIXED_WAITS:-500ms,2s}"
  -mixed-bounds "${BENCH_MIXED_BOUNDS:-2,4,8,16,32,64,0}"
)
if [[ ${BENCH_ONLY:-} == slow-ipam ]]; then
  only_args=(-only slow-ipam -cni-bin-dir "${bin_dir}" -out "${out}/slow-ipam.json" -markdown "${out}/slow-ipam.md" "${slow_args[@]}")
  if [[ ${quick} == 1 ]]; then
    only_args+=(-quick -plot-dir "${out}" -rerun "BENCH_QUICK=1 BENCH_ONLY=slow-ipam make bench")
  else
    only_args+=(-plot-dir "${root}/docs" -extra-rounds "${BENCH_EXTRA_ROUNDS:-1}" -rerun "BENCH_ONLY=slow-ipam make bench")
  fi
  echo "bench: slow-IPAM storms and mixed storm only" >&2
  "${out}/cnibench" "${only_args[@]}"
  echo "bench: tables in ${out}/slow-ipam.md, raw figures in ${out}/slow-ipam.json" >&2
  exit 0
fi

micro_count=${BENCH_MICRO_COUNT:-6}
micro_time=1s
sandboxes=0,1000
rerun="make bench"
if [[ ${quick} == 1 ]]; then
  micro_count=1
  micro_time=100ms
  sandboxes=0,100
  rerun="BENCH_QUICK=1 make bench"
fi

echo "bench: micro-benchmarks (count ${micro_count})" >&2
(cd test/bench && go test -run '^$' -bench . -benchtime "${micro_time}" -count "${micro_count}" ./micro/) \
  | tee "${out}/micro.txt" >&2
"${out}/cnibench" micro-report -in "${out}/micro.txt" >"${out}/micro.md"

echo "bench: memory with ${sandboxes} live sandboxes" >&2
cnishim_bin=${CNISHIM_TEST_CNISHIM:-${root}/_output/bin/cnishim}
[[ -x ${cnishim_bin} ]] || make build
serve_plugins=${out}/serve-plugins
mkdir -p "${serve_plugins}"
CGO_ENABLED=0 go build -o "${serve_plugins}/cnitest" ./test/plugins/cnitest
install -m 0755 "${bin_dir}/host-local" "${serve_plugins}/host-local"
"${out}/cnibench" memory -sandboxes "${sandboxes}" -cnishim "${cnishim_bin}" -serve-plugins "${serve_plugins}" >"${out}/memory.md"

# One node at the largest count: SIGKILL and restart of the server, list and status
# latencies, RSS before and after. The section goes into the report after the memory one
# (it is appended to memory.md); sandboxes not READY after the restart fail the benchmark.
node_sandboxes=${sandboxes##*,}
echo "bench: one node at ${node_sandboxes} pods (restart, list and status latency)" >&2
"${out}/cnibench" node -sandboxes "${node_sandboxes}" -cnishim "${cnishim_bin}" -serve-plugins "${serve_plugins}" >"${out}/node.md"
cat "${out}/node.md" >>"${out}/memory.md"

multinet

args=(
  -cni-bin-dir "${bin_dir}"
  -out "${out}/results.json"
  -markdown "${out}/benchmarks-bench.md"
  -micro-md "${out}/micro.md"
  -memory-md "${out}/memory.md"
  -multinet-md "${out}/multinet.md"
  -rerun "${rerun}"
  "${slow_args[@]}"
)
if [[ ${quick} == 1 ]]; then
  args+=(-quick -plot-dir "${out}")
else
  args+=(
    -plot-dir "${root}/docs"
    -rounds "${BENCH_ROUNDS:-3}"
    -extra-rounds "${BENCH_EXTRA_ROUNDS:-1}"
    -scenarios "${BENCH_SCENARIOS:-100x1,200x8,400x32}"
    -storms "${BENCH_STORMS:-200x8,200x32,400x8,400x32}"
    -sweep "${BENCH_SWEEP:-200x32-hp}"
    -sweep-max "${BENCH_SWEEP_MAX:-8}"
  )
fi

# The real-plugin runs and the storms, last because they are long. The report (stdout and
# benchmarks-bench.md) includes the micro-benchmark and memory tables. A failed or leaking
# run makes cnibench exit non-zero after cleaning up and reporting what it measured.
echo "bench: real-plugin scenarios and admission storms" >&2
"${out}/cnibench" "${args[@]}"
echo "bench: tables in ${out}/benchmarks-bench.md, raw figures in ${out}/results.json" >&2
containerd_storms
kubelet_storms
