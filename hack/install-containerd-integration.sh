#!/usr/bin/env bash
# Builds containerd's own CRI integration tests at the pinned containerd version into OUT_DIR
# (default _output/containerd/integration), for test/containerd/integration_test.go to run
# against both containerd builds of hack/install-containerd.sh:
#
#   OUT/cri-integration.test         `go test -c ./integration` of containerd's module
#   OUT/cni-bridge-fp                the CNI plugin with failpoints the rollback tests configure
#                                    (it delegates to `bridge` on CNI_PATH)
#   OUT/containerd-shim-runc-fp-v1   the runc shim with failpoints (handler runc-fp), static
#
# The tests are a Go test binary of containerd's module, so they cannot be `go install`ed: this
# builds them in a writable copy of the module source (the module cache is read-only and go test
# -c resolves the module's own dependencies), with containerd's own go.mod and go.sum, as
# hack/install-critest.sh builds critest. loopback-v2 (TestIssue10244LoopbackV2) is not built:
# that test starts a containerd of its own with a default config and pulls from ghcr.io, which
# these runs do not allow.
#
# Idempotent and cached: skips the build when OUT/.version records the pinned version and the
# Go toolchain and every binary is there.
#
# Usage: hack/install-containerd-integration.sh [OUT_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
out=${1:-${root}/_output/containerd/integration}
mkdir -p "${out}"
out=$(cd "${out}" && pwd)
pkg=github.com/containerd/containerd/v2
bins=(cri-integration.test cni-bridge-fp containerd-shim-runc-fp-v1)
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod

log() { echo "install-containerd-integration: $*" >&2; }

want="containerd ${CONTAINERD_VERSION} integration $(go env GOVERSION)"
have=1
for b in "${bins[@]}"; do
  [[ -x "${out}/${b}" ]] || have=0
done
if [[ ${have} == 1 && -f "${out}/.version" && "$(cat "${out}/.version")" == "${want}" ]]; then
  exit 0
fi

mod_dir=$(go mod download -json "${pkg}@${CONTAINERD_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
if [[ -z "${mod_dir}" || ! -d "${mod_dir}" ]]; then
  log "go mod download ${pkg}@${CONTAINERD_VERSION} gave no module dir"
  exit 1
fi
work=$(mktemp -d)
trap 'chmod -R u+w "${work}"; rm -rf "${work}"' EXIT
cp -r "${mod_dir}" "${work}/containerd"
chmod -R u+w "${work}/containerd"

started=${SECONDS}
log "building containerd ${CONTAINERD_VERSION}'s CRI integration tests into ${out} (minutes when cold)"
(
  cd "${work}/containerd"
  go test -c -o "${work}/cri-integration.test" ./integration
  go build -o "${work}/cni-bridge-fp" ./integration/failpoint/cmd/cni-bridge-fp
  # Static, as containerd's Makefile builds its shims.
  CGO_ENABLED=0 go build -ldflags '-extldflags "-static"' -o "${work}/containerd-shim-runc-fp-v1" \
    ./integration/failpoint/cmd/containerd-shim-runc-fp-v1
)
rm -f "${out}/.version"
for b in "${bins[@]}"; do
  install -m 0755 "${work}/${b}" "${out}/${b}"
done
echo "${want}" >"${out}/.version"
log "built the CRI integration tests in $((SECONDS - started))s"
