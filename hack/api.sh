#!/usr/bin/env bash
# The exported API of each public package (pkg/... and the go-cni drop-in, gocni/), as go doc -all prints it, kept in api/ so
# that a change to it is deliberate and shows in review.
#
# Usage: hack/api.sh check   (verify: exits 1 and shows the diff when api/ is out of date)
#        hack/api.sh update  (rewrite api/ after a deliberate API change)
set -o errexit -o nounset -o pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
mode=${1:-check}
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT

for pkg in $(go list ./pkg/...); do
  rel=${pkg#github.com/cnishim/cnishim/pkg/}
  go doc -all "./pkg/${rel}" >"${tmp}/${rel//\//-}.txt"
done
# The go-cni drop-in, a module of its own: its API is go-cni's and a few names more.
(cd gocni && go doc -all .) >"${tmp}/gocni.txt"

case "${mode}" in
  update)
    rm -rf api && mkdir -p api && cp "${tmp}"/*.txt api/
    ;;
  check)
    if ! diff -ruN api "${tmp}" >"${tmp}.diff"; then
      cat "${tmp}.diff" >&2
      rm -f "${tmp}.diff"
      echo "api: the exported API of pkg/ differs from api/ (above); if the change is meant, run hack/api.sh update and commit api/" >&2
      exit 1
    fi
    rm -f "${tmp}.diff"
    ;;
  *)
    echo "usage: hack/api.sh check|update" >&2
    exit 2
    ;;
esac
