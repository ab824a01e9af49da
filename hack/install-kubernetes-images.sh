#!/usr/bin/env bash
# Builds, with no registry, the container images the Kubernetes e2e [sig-network] specs run on
# the local cluster (hack/images -set kubernetes: agnhost, glibc-dns-testing, coredns, busybox and
# nginx, under the names test/utils/image of Kubernetes KUBERNETES_VERSION gives them) into
# OUT_DIR (default _output/kubernetes/images):
#
#   OUT/*.tar   OCI image layout archives, importable with `ctr -n k8s.io images import`
#   OUT/list    the images' names, one a line
#
# The sandbox (pause) image is hack/install-containerd.sh's. The images are made of:
#   - Debian's busybox-static (downloaded and unpacked, not installed), as install-containerd.sh;
#   - agnhost, from KUBERNETES_BIN_DIR (default _output/kubernetes/bin): build it first with
#     `hack/install-kubernetes.sh _output/kubernetes/bin agnhost`; the script fails without it;
#   - agnhost's porter/localhost.{crt,key}, from the k8s.io/kubernetes module;
#   - CoreDNS COREDNS_VERSION (hack/versions.sh), built from the Go module proxy, static and stripped;
#   - glibc programs of the host and the shared libraries they load (hack/images/kubernetes.go
#     names them: keep host_programs below in step): installs the Debian packages they come
#     from (curl bind9-dnsutils netcat-openbsd dash libc-bin bash hostname) when missing.
#
# Idempotent: skips the build when OUT/.version records the busybox-static version, the sha256
# of hack/images' sources and of this script, the Go version, agnhost's sha256, the CoreDNS and
# Kubernetes versions, and the versions of the Debian packages that own the files copied from the
# host.
#
# Usage: hack/install-kubernetes-images.sh [OUT_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
# shellcheck source=hack/debian.sh
source "${root}/hack/debian.sh"
out=${1:-${root}/_output/kubernetes/images}
mkdir -p "${out}"
out=$(cd "${out}" && pwd)
agnhost=${KUBERNETES_BIN_DIR:-${root}/_output/kubernetes/bin}/agnhost
export GOTOOLCHAIN=local GOWORK=off

log() { echo "install-kubernetes-images: $*" >&2; }

tmp=""
cleanup() {
  if [[ -n ${tmp} ]]; then
    chmod -R u+w "${tmp}" 2>/dev/null || true
    rm -rf "${tmp}"
  fi
}
trap cleanup EXIT

# The host programs hack/images copies (glibcPrograms and glibcDNSTestingPrograms there), and
# the dirs it looks them up in, in order.
host_programs=(dash bash curl dig host nslookup nc.openbsd getent hostname)
host_bin_dirs=(/usr/bin /bin /usr/sbin /sbin)

# host_packages: the Debian packages, as PKG=VERSION, that own the host programs, their ELF
# interpreter and the libraries ldd finds for them, and what the symlinks among those point to.
# dpkg knows a file by the path its package ships it at, /lib/... or /usr/lib/... on Debian 12's
# merged /usr: both are asked, in one dpkg-query.
host_packages() {
  local p d f files=() paths=() owners
  local -A owned=()
  for p in "${host_programs[@]}"; do
    f=""
    for d in "${host_bin_dirs[@]}"; do
      if [[ -f "${d}/${p}" ]]; then
        f=${d}/${p}
        break
      fi
    done
    if [[ -z ${f} ]]; then
      log "no ${p} in ${host_bin_dirs[*]}"
      return 1
    fi
    files+=("${f}")
    while IFS= read -r d; do
      files+=("${d}")
    done < <(ldd "${f}" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  done
  for f in "${files[@]}"; do
    d=$(readlink -f "${f}")
    paths+=("${f}" "${f#/usr}" "/usr${f}" "${d}" "${d#/usr}" "/usr${d}")
  done
  owners=$(dpkg-query -S "${paths[@]}" 2>/dev/null || true)
  while IFS= read -r d; do
    owned[${d#*: }]=1
  done <<<"${owners}"
  for f in "${files[@]}"; do
    for d in "${f}" "$(readlink -f "${f}")"; do
      if [[ -z ${owned[${d}]:-} && -z ${owned[${d#/usr}]:-} && -z ${owned[/usr${d}]:-} ]]; then
        log "no Debian package owns ${d}"
        return 1
      fi
    done
  done
  awk -F': /' '!/^diversion / && NF > 1 {n = split($1, p, ", "); for (i = 1; i <= n; i++) print p[i]}' <<<"${owners}" |
    LC_ALL=C sort -u | xargs -r dpkg-query -W -f="\${Package}=\${Version}\n" | LC_ALL=C sort -u
}

if [[ ! -x ${agnhost} ]]; then
  log "no ${agnhost}: build it with hack/install-kubernetes.sh $(dirname "${agnhost}") agnhost"
  exit 1
fi
apt_ensure curl bind9-dnsutils netcat-openbsd dash libc-bin bash hostname

bb=$(busybox_static_version)
prog=$(cd "${root}" && find hack/images -name '*.go' -print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
debs=$(host_packages | paste -sd' ')
want="busybox-static=${bb} hack/images=sha256:${prog} script=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12) $(go env GOVERSION)"
want+=" agnhost=sha256:$(sha256sum "${agnhost}" | cut -d' ' -f1) coredns=${COREDNS_VERSION} kubernetes=${KUBERNETES_VERSION} ${debs}"
if [[ -f "${out}/list" && -f "${out}/.version" && "$(cat "${out}/.version")" == "${want}" ]] &&
  compgen -G "${out}/*.tar" >/dev/null; then
  exit 0
fi

started=${SECONDS}
log "building the e2e images from busybox-static ${bb} into ${out}"
tmp=$(mktemp -d)
fetch_busybox_static "${bb}" "${tmp}/busybox"

# agnhost's certificates, from the module (outside any module, whatever GOFLAGS the caller has).
src=$(cd "${tmp}" && GOFLAGS='' go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" |
  sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
certs=${src}/test/images/agnhost/porter
if [[ -z ${src} || ! -f ${certs}/localhost.crt ]]; then
  log "go mod download k8s.io/kubernetes@${KUBERNETES_VERSION} gave no ${certs}/localhost.crt"
  exit 1
fi

log "building CoreDNS ${COREDNS_VERSION}"
(cd "${tmp}" && GOFLAGS='' CGO_ENABLED=0 GOBIN="${tmp}/bin" \
  go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@${COREDNS_VERSION}")

rm -f "${out}/.version"
(cd "${root}" && go run ./hack/images -set kubernetes -busybox "${tmp}/busybox/root/bin/busybox" \
  -agnhost "${agnhost}" -agnhost-certs "${certs}" -coredns "${tmp}/bin/coredns" -out "${out}")
echo "${want}" >"${out}/.version"
log "built the e2e images in $((SECONDS - started))s"
