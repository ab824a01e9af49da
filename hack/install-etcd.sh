#!/usr/bin/env bash
# Builds etcd and etcdctl at ETCD_VERSION (hack/versions.sh) from the Go module proxy into OUT_DIR
# (default _output/kubernetes/bin): the store of the local cluster's flannel network and of the
# Kubernetes cluster's API server.
#
# go.etcd.io/etcd/server/v3 and etcdctl/v3 carry replace directives to sibling dirs, which
# `go install pkg@version` refuses, and the root module go.etcd.io/etcd/v3 is not served. So
# their main packages (server/v3 is etcd's main) are built from a scratch module that requires
# every etcd module at the same version.
#
# Idempotent and cached: skips the build when OUT/.etcd.version records the version and the Go
# version.
#
# Usage: hack/install-etcd.sh [OUT_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
out=${1:-${root}/_output/kubernetes/bin}
mkdir -p "${out}"
want="etcd=${ETCD_VERSION} $(GOTOOLCHAIN=local go env GOVERSION)"
if [[ -x "${out}/etcd" && -x "${out}/etcdctl" && -f "${out}/.etcd.version" && "$(cat "${out}/.etcd.version")" == "${want}" ]]; then
  exit 0
fi

echo "install-etcd: building etcd ${ETCD_VERSION} into ${out}" >&2
tmp=$(mktemp -d)
trap 'chmod -R u+w "${tmp}" 2>/dev/null; rm -rf "${tmp}"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
cd "${tmp}"
go mod init cnishim.local/etcd >/dev/null 2>&1
etcd_mods=(server/v3 etcdctl/v3 api/v3 client/pkg/v3 client/v3 pkg/v3)
# shellcheck disable=SC2046 # one -require flag per module
go mod edit $(printf -- '-require=go.etcd.io/etcd/%s@'"${ETCD_VERSION}"' ' "${etcd_mods[@]}")
go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" "go.etcd.io/etcd/etcdctl/v3@${ETCD_VERSION}" >/dev/null 2>&1
go build -trimpath -o "${tmp}/bin/etcd" go.etcd.io/etcd/server/v3
go build -trimpath -o "${tmp}/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
rm -f "${out}/.etcd.version"
install -m 0755 "${tmp}/bin/etcd" "${tmp}/bin/etcdctl" "${out}/"
echo "${want}" >"${out}/.etcd.version"
