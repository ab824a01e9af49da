#!/usr/bin/env bash
# Builds Kubernetes binaries at the pinned version from the Go module proxy into OUT_DIR (default
# _output/kubernetes/bin): the commands named (default: the kubelet), each one of
#   kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl (cmd/NAME),
#   agnhost (test/images/agnhost, the e2e test image's one binary),
#   e2e.test (the upstream e2e suite, `go test -c k8s.io/kubernetes/test/e2e`, as
#   hack/make-rules/build.sh does it),
#   ginkgo (the ginkgo CLI at the version kubernetes requires, which runs e2e.test's specs in
#   parallel processes, as hack/ginkgo-e2e.sh does).
#
# `go install k8s.io/kubernetes/cmd/kubelet@VERSION` is refused: the kubernetes module's go.mod
# replaces each of its staging modules (k8s.io/api, k8s.io/client-go, ...) with a path inside
# its own tree, and go install takes no module with replace directives. So the build goes
# through a generated scratch module that requires k8s.io/kubernetes at the pinned version and
# replaces each staging module, as read from that go.mod, with its own release of the same
# Kubernetes version (v1.37.2's are v0.37.2), which is what those paths hold. Seeded with
# kubernetes' own go.sum and tidied, it builds with kubernetes' own dependency versions. The
# repo's go.mod is never touched.
#
# Built as Kubernetes' release build does (hack/lib/golang.sh): static with cgo off, -trimpath,
# and the version stamped into k8s.io/component-base/version (the module proxy has no git tree,
# so gitCommit is empty and gitTreeState says "archive").
#
# Idempotent and cached per binary: skips a command whose OUT/.NAME.version records the pinned
# version, the Go version and this script. A cold build takes minutes (the kubelet about 6 on two
# cores; everything, e2e.test included, about 20) and a few GB of Go build cache.
#
# Usage: hack/install-kubernetes.sh [OUT_DIR [NAME...]]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
out=${1:-${root}/_output/kubernetes/bin}
mkdir -p "${out}"
out=$(cd "${out}" && pwd)
pkg=k8s.io/kubernetes
shift || true
wanted=("$@")
((${#wanted[@]})) || wanted=(kubelet)
export GOTOOLCHAIN=local GOWORK=off

log() { echo "install-kubernetes: $*" >&2; }

# The package each name is built from.
pkgof() {
  case "$1" in
    agnhost) echo "${pkg}/test/images/agnhost" ;;
    e2e.test) echo "${pkg}/test/e2e" ;;
    ginkgo) echo "github.com/onsi/ginkgo/v2/ginkgo" ;;
    kubelet | kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubectl)
      echo "${pkg}/cmd/$1" ;;
    *) return 1 ;;
  esac
}

# The stamp: the version, the toolchain and this script (its ldflags, its wrapper), so that a
# change to any of them rebuilds.
want="kubernetes ${KUBERNETES_VERSION} $(go env GOVERSION) script=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
cmds=()
for c in "${wanted[@]}"; do
  if ! pkgof "${c}" >/dev/null; then
    log "unknown command ${c}"
    exit 2
  fi
  if [[ -x "${out}/${c}" && -f "${out}/.${c}.version" && "$(cat "${out}/.${c}.version")" == "${want}" ]]; then
    continue
  fi
  cmds+=("${c}")
done
((${#cmds[@]})) || exit 0

tmp=$(mktemp -d)
trap 'chmod -R u+w "${tmp}" 2>/dev/null; rm -rf "${tmp}"' EXIT
started=${SECONDS}
log "building ${cmds[*]} ${KUBERNETES_VERSION} into ${out} (minutes when cold)"

# From the scratch dir, outside any module, whatever GOFLAGS the caller has.
src=$(cd "${tmp}" && GOFLAGS= go mod download -json "${pkg}@${KUBERNETES_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
if [[ -z "${src}" || ! -f "${src}/go.mod" ]]; then
  log "go mod download ${pkg}@${KUBERNETES_VERSION} gave no module dir"
  exit 1
fi
# v1.37.2 -> v0.37.2: the version each staging module is released at with this Kubernetes.
staging_version="v0.${KUBERNETES_VERSION#v1.}"
mapfile -t staging < <(sed -n 's|^\t\(k8s\.io/[^ ]*\) => \./staging/src/.*$|\1|p' "${src}/go.mod")
if ((${#staging[@]} == 0)); then
  log "found no staging replace directives in ${src}/go.mod"
  exit 1
fi
{
  printf 'module cnishim.local/kubernetes\n\ngo %s\n\nrequire %s %s\n\ntool (\n' \
    "$(sed -n 's/^go //p' "${src}/go.mod")" "${pkg}" "${KUBERNETES_VERSION}"
  # Every main package asked for (built or not) and always kubectl, so that the wrapper requires
  # k8s.io/kubernetes after tidying even when only e2e.test, not a tool, is to be built.
  printf '%s\n' "${wanted[@]}" kubectl | sort -u | while read -r c; do
    [[ "${c}" == e2e.test ]] || printf '\t%s\n' "$(pkgof "${c}")"
  done
  printf ')\n\n'
  # kubernetes' godebug settings (default=go1.26 at v1.37.2), as its own build has them.
  grep '^godebug ' "${src}/go.mod" || true
  printf 'replace (\n'
  for m in "${staging[@]}"; do
    printf '\t%s => %s %s\n' "${m}" "${m}" "${staging_version}"
  done
  printf ')\n'
} >"${tmp}/go.mod"
install -m 0644 "${src}/go.sum" "${tmp}/go.sum"
(cd "${tmp}" && GOFLAGS=-mod=mod go mod tidy)

v=k8s.io/component-base/version
ld="-s -w -X ${v}.gitVersion=${KUBERNETES_VERSION} -X ${v}.gitTreeState=archive"
ld+=" -X ${v}.gitMajor=1 -X ${v}.gitMinor=$(cut -d. -f2 <<<"${KUBERNETES_VERSION}")"
ld+=" -X ${v}.buildDate=1970-01-01T00:00:00Z"
for c in "${cmds[@]}"; do
  if [[ "${c}" == e2e.test ]]; then
    # A test binary is not a tool; go test -c finds its imports through k8s.io/kubernetes'
    # requirements, which the wrapper has.
    (cd "${tmp}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go test -c -trimpath -ldflags "${ld}" -o "${tmp}/bin/${c}" "$(pkgof "${c}")")
  else
    (cd "${tmp}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ld}" -o "${tmp}/bin/${c}" "$(pkgof "${c}")")
  fi
  rm -f "${out}/.${c}.version"
  install -m 0755 "${tmp}/bin/${c}" "${out}/${c}"
  echo "${want}" >"${out}/.${c}.version"
done
rm -f "${out}/.version"
log "built ${cmds[*]} in $((SECONDS - started))s"
