#!/usr/bin/env bash
# Static checks. Each failure names the command that fixes it.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
# shellcheck source=hack/versions.sh
source hack/versions.sh
failed=0

mods=(.)
[[ -f test/bench/go.mod ]] && mods+=(test/bench)
[[ -f gocni/go.mod ]] && mods+=(gocni)

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n "${unformatted}" ]]; then
  echo "gofmt: not formatted:" ${unformatted} >&2
  echo "  fix: gofmt -w ${unformatted}" >&2
  failed=1
fi

for m in "${mods[@]}"; do
  if ! (cd "${m}" && go vet ./...); then
    echo "go vet (${m}): see above; fix the code it names" >&2
    failed=1
  fi
  # The containerd suites beyond make test are behind build tags; vet them too.
  if [[ ${m} == . ]] && ! go vet -tags containerd_full,containerd_bench ./test/containerd/; then
    echo "go vet -tags containerd_full,containerd_bench ./test/containerd/: see above" >&2
    failed=1
  fi
  # So is the kubelet suite (make e2e-kubelet, make bench).
  if [[ ${m} == . ]] && ! go vet -tags kubelet_e2e,kubelet_bench ./test/kubelet/; then
    echo "go vet -tags kubelet_e2e,kubelet_bench ./test/kubelet/: see above" >&2
    failed=1
  fi
  # And the Kubernetes suite (make e2e-k8s).
  if [[ ${m} == . ]] && ! go vet -tags k8s_e2e,k8s_bench ./test/k8s/; then
    echo "go vet -tags k8s_e2e,k8s_bench ./test/k8s/: see above" >&2
    failed=1
  fi
  if ! (cd "${m}" && go mod tidy -diff >/dev/null 2>&1); then
    echo "go mod tidy (${m}): go.mod/go.sum are not tidy" >&2
    echo "  fix: (cd ${m} && go mod tidy)" >&2
    failed=1
  fi
done

staticcheck_bin="${root}/_output/bin/staticcheck"
if [[ ! -x "${staticcheck_bin}" ]] || [[ "$(cat "${root}/_output/bin/.staticcheck-version" 2>/dev/null)" != "${STATICCHECK_VERSION}" ]]; then
  mkdir -p "${root}/_output/bin"
  GOBIN="${root}/_output/bin" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
  echo "${STATICCHECK_VERSION}" >"${root}/_output/bin/.staticcheck-version"
fi
for m in "${mods[@]}"; do
  if ! (cd "${m}" && "${staticcheck_bin}" ./...); then
    echo "staticcheck (${m}): see above; fix the code it names (run: ${staticcheck_bin} ./...)" >&2
    failed=1
  fi
done
if ! "${staticcheck_bin}" -tags kubelet_e2e,kubelet_bench ./test/kubelet/; then
  echo "staticcheck -tags kubelet_e2e,kubelet_bench ./test/kubelet/: see above" >&2
  failed=1
fi
if ! "${staticcheck_bin}" -tags k8s_e2e,k8s_bench ./test/k8s/; then
  echo "staticcheck -tags k8s_e2e,k8s_bench ./test/k8s/: see above" >&2
  failed=1
fi

# The import layers (internal/testing/layers), every exported name of pkg/ with a caller
# outside its package (hack/apicheck), the exported API as recorded in api/ (hack/api.sh), and
# every test the docs cite existing (hack/docs-tests.sh).
if ! go test -count=1 ./internal/testing/layers/ >/dev/null; then
  go test -count=1 ./internal/testing/layers/ >&2 || true
  echo "layers: an import runs the wrong way (above); see internal/testing/layers for the layers" >&2
  failed=1
fi
if ! unused=$(go run ./hack/apicheck); then
  echo "${unused}" >&2
  echo "apicheck: exported names of pkg/ without a caller outside their package but tests (above): unexport or remove them" >&2
  failed=1
fi
if ! hack/api.sh check; then
  failed=1
fi
if ! hack/docs-tests.sh; then
  echo "docs: fix the names above, or the tests they meant" >&2
  failed=1
fi

if [[ "${failed}" -ne 0 ]]; then
  exit 1
fi
echo "verify: OK (gofmt, go vet, go mod tidy, staticcheck ${STATICCHECK_VERSION}, import layers, API callers, API golden files, tests cited by docs; modules: ${mods[*]})"
