#!/usr/bin/env bash
# Checks that every test, fuzz target and benchmark the docs cite (docs/*.md, README.md) exists
# as a function of a _test.go file of the repository, or, for another project's tests the
# repository runs by name (containerd's integration tests), as a quoted name in a _test.go
# file, so that a renamed test cannot leave the docs citing one that is gone. Prints each
# missing name and exits 1 if there is any.
set -o errexit -o nounset -o pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"

defined=$(
  git ls-files '*_test.go' | xargs grep -ohE '^func (Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*' | sed 's/^func //'
  git ls-files '*_test.go' | xargs grep -ohE '"Test[A-Z][A-Za-z0-9_]*"' | tr -d '"'
)
defined=$(sort -u <<<"${defined}")
missing=0
while read -r name; do
  [[ -z "${name}" ]] && continue
  if ! grep -qx "${name}" <<<"${defined}"; then
    echo "docs cite ${name}, which no _test.go file defines" >&2
    missing=1
  fi
done < <(grep -ohE '\b(Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*' README.md docs/*.md | sort -u)
exit "${missing}"
