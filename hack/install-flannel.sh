#!/usr/bin/env bash
# Builds what the local cluster's flannel network runs (test/cluster/localcluster, opt-in with
# CLUSTER_NETWORK=flannel): flanneld, etcd and etcdctl, and the flannel CNI plugin, at the
# versions pinned in hack/versions.sh, from the Go module proxy only, into a project-local bin
# dir (default _output/flannel/bin). Idempotent and cached: a second run with the same versions
# does nothing.
#
# None of the three builds with a plain `go install pkg@version`:
#   - flanneld: main.go imports every backend, and the tencentvpc backend's cloud SDK is not
#     served by the proxy. We build a writable copy of the module with the tencentvpc backend
#     import removed, and the udp one too (its amd64 proxy is cgo, and we build static binaries
#     with CGO_ENABLED=0); vxlan is untouched.
#   - etcd: see hack/install-etcd.sh.
#   - the flannel CNI plugin moved to its own module, which is not served; the copy in
#     containernetworking/plugins v0.9.1 is (CNI spec <= 0.4.0; it delegates to bridge and
#     host-local from hack/install-cni-plugins.sh). We build it from a writable copy with one
#     fix: ADD writes the delegate's config to a scratch file before it delegates, and an ADD
#     killed mid-write (a runtime crash) leaves that file empty or cut, on which DEL fails
#     for ever ("failed to parse netconf: unexpected end of JSON input") and the pod can never
#     be removed (flannel-io/flannel#1662; flannel-io/cni-plugin#33 is the same fix, unmerged).
#     A scratch file that does not parse means nothing was delegated, so DEL now succeeds and
#     removes it.
#
# Usage: hack/install-flannel.sh [BIN_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
bin_dir=${1:-${FLANNEL_BIN_DIR:-${root}/_output/flannel/bin}}
stamp="${bin_dir}/.version"
want="flannel=${FLANNEL_VERSION} etcd=${ETCD_VERSION} flannel-cni=${FLANNEL_CNI_PLUGIN_VERSION}+del-fix"
bins=(flanneld etcd etcdctl flannel)

missing=0
for b in "${bins[@]}"; do
  [[ -x "${bin_dir}/${b}" ]] || missing=1
done
if [[ ${missing} == 0 && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  exit 0
fi

echo "install-flannel: building ${want} into ${bin_dir} (several CPU-minutes when cold)" >&2
mkdir -p "${bin_dir}"
tmp=$(mktemp -d)
trap 'chmod -R u+w "${tmp}" 2>/dev/null; rm -rf "${tmp}"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

# flanneld, from a copy of its module without the tencentvpc and udp backends.
mod=$(go mod download -json "github.com/flannel-io/flannel@${FLANNEL_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -n ${mod} ]] || { echo "install-flannel: flannel ${FLANNEL_VERSION}: no module dir" >&2; exit 1; }
cp -r "${mod}" "${tmp}/flannel"
chmod -R u+w "${tmp}/flannel"
sed -i -e '\#"github.com/flannel-io/flannel/pkg/backend/tencentvpc"#d' \
  -e '\#"github.com/flannel-io/flannel/pkg/backend/udp"#d' "${tmp}/flannel/main.go"
(cd "${tmp}/flannel" && go build -trimpath \
  -ldflags "-X github.com/flannel-io/flannel/pkg/version.Version=${FLANNEL_VERSION}" \
  -o "${tmp}/out/flanneld" .)

# etcd and etcdctl (hack/install-etcd.sh).
"${root}/hack/install-etcd.sh" "${tmp}/out"

# The flannel CNI plugin, with DEL fixed for a scratch file an ADD was killed writing.
mod=$(go mod download -json "github.com/containernetworking/plugins@${FLANNEL_CNI_PLUGIN_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -n ${mod} ]] || { echo "install-flannel: containernetworking/plugins ${FLANNEL_CNI_PLUGIN_VERSION}: no module dir" >&2; exit 1; }
cp -r "${mod}" "${tmp}/plugins"
chmod -R u+w "${tmp}/plugins"
del="${tmp}/plugins/plugins/meta/flannel/flannel_linux.go"
grep -q 'return fmt.Errorf("failed to parse netconf: %v", err)' "${del}" || {
  echo "install-flannel: ${del}: the DEL error to fix is not there" >&2; exit 1; }
sed -i 's|return fmt.Errorf("failed to parse netconf: %v", err)|return nil // cut off by a killed ADD before it delegated: nothing to undo|' "${del}"
(cd "${tmp}/plugins" && go build -trimpath -o "${tmp}/out/flannel" ./plugins/meta/flannel)

for b in "${bins[@]}"; do
  install -m 0755 "${tmp}/out/${b}" "${bin_dir}/${b}"
done
echo "${want}" >"${stamp}"
