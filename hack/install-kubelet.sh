#!/usr/bin/env bash
# Builds the kubelet at the pinned Kubernetes version from the Go module proxy into OUT_DIR
# (default _output/kubernetes/bin).
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
# Idempotent and cached: skips the build when OUT/.version records the pinned version and the Go
# version. A cold build takes minutes and a few GB of Go build cache.
#
# Usage: hack/install-kubelet.sh [OUT_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
out=${1:-${root}/_output/kubernetes/bin}
mkdir -p "${out}"
out=$(cd "${out}" && pwd)
pkg=k8s.io/kubernetes
cmds=(kubelet)
export GOTOOLCHAIN=local GOWORK=off

log() { echo "install-kubelet: $*" >&2; }

# The stamp: the version, the toolchain, the commands and this script (its ldflags, its
# wrapper), so that a change to any of them rebuilds.
want="kubernetes ${KUBERNETES_VERSION} $(go env GOVERSION) ${cmds[*]} script=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
have=1
for c in "${cmds[@]}"; do
  [[ -x "${out}/${c}" ]] || have=0
done
if ((have)) && [[ -f "${out}/.version" && "$(cat "${out}/.version")" == "${want}" ]]; then
  exit 0
fi

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
  for c in "${cmds[@]}"; do
    printf '\t%s/cmd/%s\n' "${pkg}" "${c}"
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
  (cd "${tmp}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ld}" -o "${tmp}/bin/${c}" "${pkg}/cmd/${c}")
done
rm -f "${out}/.version"
for c in "${cmds[@]}"; do
  install -m 0755 "${tmp}/bin/${c}" "${out}/${c}"
done
echo "${want}" >"${out}/.version"
log "built ${cmds[*]} in $((SECONDS - started))s"
