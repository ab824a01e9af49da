#!/usr/bin/env bash
# Builds crictl at the pinned cri-tools version into a project-local bin dir (default _output/bin).
# Idempotent and cached.
#
# Usage: hack/install-crictl.sh [BIN_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
bin_dir=${1:-${root}/_output/bin}
stamp="${bin_dir}/.crictl-version"

if [[ -x "${bin_dir}/crictl" && -f "${stamp}" && "$(cat "${stamp}")" == "${CRICTL_VERSION}" ]]; then
  exit 0
fi
echo "install-crictl: building crictl ${CRICTL_VERSION} into ${bin_dir}" >&2
mkdir -p "${bin_dir}"
GOBIN="${bin_dir}" CGO_ENABLED=0 go install "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"
echo "${CRICTL_VERSION}" >"${stamp}"
