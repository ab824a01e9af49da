#!/usr/bin/env bash
# Runs every Go fuzz target of the module for DURATION each (a go test -fuzztime value such
# as 30s or 5m; default 30s), one after the other. Each package's seed corpus lives in its
# testdata/fuzz/<Target>/ and runs on every plain go test; what fuzzing finds new goes to the
# Go build cache, and a failing input is written to testdata/fuzz/<Target>/ for go test to
# replay (commit it with the fix).
#
# Usage: hack/fuzz.sh [DURATION]     (make fuzz FUZZTIME=2m)
set -o errexit -o nounset -o pipefail

duration="${1:-30s}"
if [[ ! "${duration}" =~ ^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$|^[0-9]+x$ ]]; then
  echo "hack/fuzz.sh: duration ${duration@Q}: want a Go duration such as 30s or 5m, or a count such as 1000x" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"

# Packages of the root module whose tests declare fuzz targets.
pkgs=()
while IFS= read -r dir; do
  if grep -qsE '^func Fuzz[A-Z][A-Za-z0-9_]*\(f \*testing\.F\)' "${dir}"/*_test.go; then
    pkgs+=("${dir#"${root}"/}")
  fi
done < <(go list -f '{{.Dir}}' ./...)
if [[ ${#pkgs[@]} -eq 0 ]]; then
  echo "hack/fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

ran=0
for pkg in "${pkgs[@]}"; do
  mapfile -t targets < <(go test -list '^Fuzz' "./${pkg}" | grep -E '^Fuzz')
  for target in "${targets[@]}"; do
    echo "==> ./${pkg} ${target} for ${duration}"
    # -fuzztime bounds the run; -timeout 0 keeps go test's default 10m limit from cutting a
    # longer run short.
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "${duration}" -timeout 0 "./${pkg}"
    ran=$((ran + 1))
  done
done
echo "hack/fuzz.sh: ${ran} fuzz targets ran for ${duration} each, no failure"
