#!/usr/bin/env bash
# Builds critest, the CRI validation suite, at the pinned cri-tools version into a project-local bin
# dir (default _output/bin). critest is a Go test binary (`go test -c ./cmd/critest`), so it cannot
# be `go install`ed: this builds it in a writable copy of the module source, with the version
# stamped as cri-tools' own Makefile does. Idempotent: skips the build when the binary already
# reports the pinned version.
#
# Usage: hack/install-critest.sh [BIN_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
bin_dir=${1:-${root}/_output/bin}
want="critest version: ${CRITEST_VERSION#v}"

# The output is read whole: grep -q would stop reading early, and critest's SIGPIPE would then
# fail the pipeline.
if [[ -x "${bin_dir}/critest" ]] && grep -qxF "${want}" <<<"$("${bin_dir}/critest" --version 2>/dev/null)"; then
  exit 0
fi
echo "install-critest: building critest ${CRITEST_VERSION} into ${bin_dir}" >&2
mkdir -p "${bin_dir}"
mod_dir=$(go mod download -json "sigs.k8s.io/cri-tools@${CRITEST_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
if [[ -z "${mod_dir}" || ! -d "${mod_dir}" ]]; then
  echo "install-critest: go mod download sigs.k8s.io/cri-tools@${CRITEST_VERSION} gave no module dir" >&2
  exit 1
fi
# The module cache is read-only and go test -c resolves the module's own dependencies, so build in
# a copy.
work=$(mktemp -d)
trap 'chmod -R u+w "${work}"; rm -rf "${work}"' EXIT
cp -r "${mod_dir}" "${work}/cri-tools"
chmod -R u+w "${work}/cri-tools"
(
  cd "${work}/cri-tools"
  CGO_ENABLED=0 go test -c -trimpath -o "${work}/critest" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRITEST_VERSION#v}" ./cmd/critest
)
mv "${work}/critest" "${bin_dir}/critest"
