#!/usr/bin/env bash
# Builds containerd at the pinned version twice, runc, and the test images containerd runs,
# from the Go module proxy and Debian's packages only, into OUT_DIR (default
# _output/containerd):
#
#   OUT/stock/bin/{containerd,containerd-shim-runc-v2,ctr}  containerd as released
#   OUT/cnishim/bin/{containerd,containerd-shim-runc-v2,ctr} the same containerd with go-cni
#                                   replaced by the drop-in module gocni/ (and the shim copied
#                                   from stock: it does not use go-cni)
#   OUT/cnishim/upgraded-modules.txt  the modules that build has at another version than stock
#   OUT/bin/runc                    runc with seccomp
#   OUT/images/*.tar, OUT/images/list  the images, importable with `ctr -n k8s.io images import`
#                                   (hack/images), and their names, one a line
#
# Both containerd builds go through a scratch wrapper module that requires containerd and
# names its commands as tools, so that containerd's own dependency versions are used (a build
# list identical to its go.mod); the cnishim one adds
#   replace github.com/containerd/go-cni => <repo>/gocni
#   replace github.com/cnishim/cnishim => <repo>
# and `go mod tidy` resolves the drop-in's dependencies. MVS takes the higher version of a
# module both containerd and the repo require, so that build can differ from stock in more than
# go-cni. The repo's go.mod is never touched. Versions are stamped as containerd's and runc's
# Makefiles do; the module proxy has no git revision, so Revision says which build it is.
#
# Idempotent and cached: each piece skips its build when the stamp beside its output records
# the pinned version (the cnishim build: and the sha256 of the drop-in and of the repo's Go
# sources it compiles, so it rebuilds only when they change; the images: and the busybox-static
# package version and hack/images). Installs libseccomp-dev and pkg-config from apt when runc is
# to be built and they are missing. CNISHIM_GOCNI_DIR names another drop-in dir than <repo>/gocni;
# without a go.mod there, the script fails.
#
# Usage: hack/install-containerd.sh [OUT_DIR]
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.sh
source "${root}/hack/versions.sh"
# shellcheck source=hack/debian.sh
source "${root}/hack/debian.sh"
out=${1:-${root}/_output/containerd}
mkdir -p "${out}"
out=$(cd "${out}" && pwd)
gocni=${CNISHIM_GOCNI_DIR:-${root}/gocni}
pkg=github.com/containerd/containerd/v2
cmds=(containerd containerd-shim-runc-v2 ctr)
export GOTOOLCHAIN=local GOWORK=off

tmp=""
cleanup() {
  if [[ -n ${tmp} ]]; then
    chmod -R u+w "${tmp}" 2>/dev/null || true
    rm -rf "${tmp}"
  fi
}
trap cleanup EXIT
scratch() {
  [[ -n ${tmp} ]] || tmp=$(mktemp -d)
}

log() { echo "install-containerd: $*" >&2; }
# building WHAT logs a build starting; built WHAT, how long it took.
started=0
building() { started=${SECONDS}; log "building $*"; }
built() { log "built $* in $((SECONDS - started))s"; }

# stamped DIR WANT [FILES...]: whether DIR/.version holds WANT and every file is there.
stamped() {
  local dir=$1 want=$2 f
  shift 2
  for f in "$@"; do
    [[ -x "${dir}/${f}" ]] || return 1
  done
  [[ -f "${dir}/.version" && "$(cat "${dir}/.version")" == "${want}" ]]
}

mod_dir() {
  local d
  d=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  if [[ -z "${d}" || ! -d "${d}" ]]; then
    log "go mod download $1 gave no module dir"
    exit 1
  fi
  echo "${d}"
}

# wrapper DIR [REPLACE...]: a module in DIR that requires containerd, lists its commands as
# tools, and carries the replace directives given (old=new), tidied.
wrapper() {
  local dir=$1 r
  shift
  mkdir -p "${dir}"
  {
    printf 'module cnishim.local/containerd\n\ngo 1.26.6\n\nrequire %s %s\n\ntool (\n' "${pkg}" "${CONTAINERD_VERSION}"
    printf '\t%s/cmd/%s\n' "${pkg}" "${cmds[@]}"
    printf ')\n'
    for r in "$@"; do
      printf 'replace %s => %s\n' "${r%%=*}" "${r#*=}"
    done
  } >"${dir}/go.mod"
  # Seed go.sum with containerd's own; tidy adds what the replacements need.
  install -m 0644 "$(mod_dir "${pkg}@${CONTAINERD_VERSION}")/go.sum" "${dir}/go.sum"
  (cd "${dir}" && GOFLAGS=-mod=mod go mod tidy)
}

# build_containerd WRAPPER_DIR BIN_DIR REVISION CMD...: builds the commands as containerd's
# Makefile does for a release on Linux: PIE, stripped, tag urfave_cli_no_docs, cgo on (the
# btrfs snapshotter), and the shim static with cgo off and tag no_grpc.
build_containerd() {
  local dir=$1 bin=$2 rev=$3 c
  shift 3
  local ld="-X ${pkg}/version.Version=${CONTAINERD_VERSION} -X ${pkg}/version.Revision=${rev} -X ${pkg}/version.Package=${pkg}"
  for c in "$@"; do
    if [[ ${c} == containerd-shim-runc-v2 ]]; then
      (cd "${dir}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -tags "urfave_cli_no_docs no_grpc" \
        -ldflags "${ld} -extldflags -static -s -w" -o "${bin}/${c}" "${pkg}/cmd/${c}")
    else
      (cd "${dir}" && CGO_ENABLED=1 GOFLAGS=-mod=mod go build -buildmode=pie -tags urfave_cli_no_docs \
        -ldflags "${ld} -s -w" -o "${bin}/${c}" "${pkg}/cmd/${c}")
    fi
  done
}

# source_hash: the sha256 of what the cnishim build compiles of ours: the drop-in's Go files,
# go.mod and go.sum, and the repo's (tracked and untracked, not ignored) outside test/, hack/
# and tests. Paths are hashed with the contents, so a rename counts as a change.
source_hash() {
  local files=() f
  # ls-files also names tracked files deleted from the work tree: they are left out.
  while IFS= read -r -d '' f; do
    [[ -f "${root}/${f}" ]] && files+=("${root}/${f}")
  done < <(cd "${root}" && git ls-files -z -co --exclude-standard -- '*.go' '*go.mod' '*go.sum' \
    ':!:test/' ':!:hack/' ':!:*_test.go' ':!:*/testdata/*' | LC_ALL=C sort -zu)
  while IFS= read -r -d '' f; do
    files+=("${f}")
  done < <(find "${gocni}" \( -name '*.go' -o -name go.mod -o -name go.sum \) ! -name '*_test.go' \
    ! -path '*/testdata/*' -print0 | LC_ALL=C sort -z)
  sha256sum "${files[@]}" | sha256sum | cut -d' ' -f1
}

# 1. Stock containerd.
stock="${out}/stock/bin"
stock_want="containerd ${CONTAINERD_VERSION}"
if ! stamped "${stock}" "${stock_want}" "${cmds[@]}"; then
  building "stock containerd ${CONTAINERD_VERSION} into ${stock} (minutes when cold)"
  scratch
  apt_ensure gcc libc6-dev
  wrapper "${tmp}/stock"
  build_containerd "${tmp}/stock" "${tmp}/stock-bin" stock "${cmds[@]}"
  mkdir -p "${stock}"
  for c in "${cmds[@]}"; do
    install -m 0755 "${tmp}/stock-bin/${c}" "${stock}/${c}"
  done
  echo "${stock_want}" >"${stock}/.version"
  built "stock containerd"
fi

# 2. containerd with the go-cni drop-in.
dropin="${out}/cnishim/bin"
if [[ ! -f "${gocni}/go.mod" ]]; then
  log "${gocni}/go.mod is missing: no drop-in to build containerd with (CNISHIM_GOCNI_DIR names another)"
  exit 1
else
  hash=$(source_hash)
  dropin_want="containerd ${CONTAINERD_VERSION} $(go env GOVERSION) gocni=${gocni} src=sha256:${hash}"
  if ! stamped "${dropin}" "${dropin_want}" "${cmds[@]}"; then
    building "containerd ${CONTAINERD_VERSION} with go-cni replaced by ${gocni} into ${dropin} (source sha256 ${hash:0:12})"
    scratch
    apt_ensure gcc libc6-dev
    rm -rf "${tmp}/gocni"
    wrapper "${tmp}/gocni" "github.com/containerd/go-cni=${gocni}" "github.com/cnishim/cnishim=${root}"
    build_containerd "${tmp}/gocni" "${tmp}/gocni-bin" "cnishim-gocni-${hash:0:12}" containerd ctr
    # What MVS took at a higher version than containerd's go.mod, for the drop-in and the repo.
    LC_ALL=C join \
      <(awk '/^\t[^ ]+ v[^ ]+/ {print $1, $2}' "$(mod_dir "${pkg}@${CONTAINERD_VERSION}")/go.mod" | LC_ALL=C sort) \
      <(cd "${tmp}/gocni" && GOFLAGS=-mod=mod go list -m -f '{{.Path}} {{.Version}}' all | LC_ALL=C sort) |
      awk '$2 != $3 {print $1, $2, "=>", $3}' >"${tmp}/upgraded"
    log "modules at another version than containerd's go.mod in that build: $(awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $4} END {if (NR == 0) printf "none"}' "${tmp}/upgraded")"
    mkdir -p "${dropin}"
    rm -f "${dropin}/.version"
    install -m 0755 "${tmp}/gocni-bin/containerd" "${tmp}/gocni-bin/ctr" "${dropin}/"
    install -m 0755 "${stock}/containerd-shim-runc-v2" "${dropin}/"
    install -m 0644 "${tmp}/upgraded" "${out}/cnishim/upgraded-modules.txt"
    echo "${dropin_want}" >"${dropin}/.version"
    built "containerd with the go-cni drop-in"
  fi
fi

# 3. runc, with seccomp, as runc's Makefile builds it (less the libpathrs tag: the Rust library
# is not in Debian 12; runc then uses its pure Go pathrs-lite).
runc_want="runc version ${RUNC_VERSION#v}"
runc_version=$("${out}/bin/runc" --version 2>/dev/null || true)
if [[ "${runc_version}" != "${runc_want}"$'\n'* || "${runc_version}" != *$'\nlibseccomp: '* ]]; then
  building "runc ${RUNC_VERSION} with seccomp into ${out}/bin"
  scratch
  apt_ensure gcc libc6-dev libseccomp-dev pkg-config
  cp -r "$(mod_dir "github.com/opencontainers/runc@${RUNC_VERSION}")" "${tmp}/runc"
  chmod -R u+w "${tmp}/runc"
  (cd "${tmp}/runc" && CGO_ENABLED=1 go build -trimpath -buildmode=pie -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-X main.gitCommit=${RUNC_VERSION}" -o "${tmp}/runc-bin" .)
  mkdir -p "${out}/bin"
  install -m 0755 "${tmp}/runc-bin" "${out}/bin/runc"
  built runc
fi

# 4. The images, from Debian's static busybox (downloaded and unpacked, not installed).
images="${out}/images"
bb=$(busybox_static_version)
prog=$(cd "${root}" && find hack/images -name '*.go' -print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
images_want="busybox-static=${bb} hack/images=sha256:${prog} $(go env GOVERSION)"
have_tars=1
if [[ -f "${images}/list" ]]; then
  compgen -G "${images}/*.tar" >/dev/null || have_tars=0
else
  have_tars=0
fi
if [[ ${have_tars} == 0 || ! -f "${images}/.version" || "$(cat "${images}/.version")" != "${images_want}" ]]; then
  building "the test images from busybox-static ${bb} into ${images}"
  scratch
  fetch_busybox_static "${bb}" "${tmp}/busybox"
  mkdir -p "${images}"
  rm -f "${images}/.version"
  (cd "${root}" && go run ./hack/images -busybox "${tmp}/busybox/root/bin/busybox" -out "${images}")
  echo "${images_want}" >"${images}/.version"
  built "the test images"
fi
