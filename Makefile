# cnishim: a kubelet-style CNI network plugin shim for CRI runtimes.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

OUT          := $(CURDIR)/_output
CNI_BIN_DIR  := $(OUT)/cni/bin
BIN_DIR      := $(OUT)/bin
GO_TEST_FLAGS ?=
# The pod network of the local cluster e2e-cluster runs its checks on: kindnet or flannel.
CLUSTER_NETWORK ?= kindnet
FLANNEL_BIN_DIR := $(OUT)/flannel/bin
FUZZTIME     ?= 30s

export CNISHIM_TEST_CNI_BIN := $(CNI_BIN_DIR)
export CNISHIM_TEST_CRICTL  := $(BIN_DIR)/crictl
export CNISHIM_TEST_CNISHIM := $(BIN_DIR)/cnishim
export CNISHIM_TEST_CRITEST := $(BIN_DIR)/critest
export CNISHIM_TEST_CONTAINERD := $(OUT)/containerd
export CNISHIM_TEST_KUBELET := $(OUT)/kubernetes/bin/kubelet

# Tests that need root or what deps installs fail without it under these targets (and CI, which
# runs make test); a plain go test ./... by a user who is not root skips them (internal/testing/roottest).
test e2e e2e-containerd e2e-kubelet e2e-k8s e2e-cluster soak soak-cluster bench: export CNISHIM_REQUIRE_ROOT_TESTS := 1
# make test runs the cluster checks on kindnet alone, whatever the environment says; flannel is
# opt-in (CLUSTER_NETWORK=flannel make e2e-cluster), as it takes minutes to build.
test: export CLUSTER_NETWORK := kindnet
e2e-cluster soak-cluster: export CLUSTER_NETWORK := $(CLUSTER_NETWORK)
e2e-cluster soak-cluster: export CNISHIM_TEST_FLANNEL_BIN := $(FLANNEL_BIN_DIR)

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the cnishim command into _output/bin.
	@mkdir -p $(BIN_DIR)
	CGO_ENABLED=0 go build -o $(BIN_DIR)/cnishim ./cmd/cnishim

.PHONY: deps
deps: ## Install what the tests and the demo need: the CNI plugins, iptables, crictl, critest.
	hack/install-cni-plugins.sh $(CNI_BIN_DIR)
	hack/install-crictl.sh $(BIN_DIR)
	hack/install-critest.sh $(BIN_DIR)

.PHONY: deps-flannel
deps-flannel: ## Build flanneld, etcd and the flannel CNI plugin into _output/flannel/bin (CLUSTER_NETWORK=flannel).
	hack/install-flannel.sh $(FLANNEL_BIN_DIR)

.PHONY: deps-containerd
deps-containerd: ## Build containerd v2.4.2 (stock and with the go-cni drop-in), runc and the test images into _output/containerd.
	hack/install-containerd.sh $(OUT)/containerd

.PHONY: deps-containerd-integration
deps-containerd-integration: ## Build containerd v2.4.2's CRI integration tests and their failpoint CNI plugin and shim into _output/containerd/integration.
	hack/install-containerd-integration.sh $(OUT)/containerd/integration

.PHONY: deps-kubelet
deps-kubelet: ## Build the kubelet v1.37.2 into _output/kubernetes/bin (through a generated wrapper module; see hack/install-kubernetes.sh).
	hack/install-kubernetes.sh $(OUT)/kubernetes/bin kubelet

.PHONY: deps-k8s
deps-k8s: deps-kubelet ## Build the rest of a Kubernetes v1.37.2 cluster into _output/kubernetes: control plane, kube-proxy, kubectl, etcd, e2e.test, agnhost, and the e2e images.
	hack/install-kubernetes.sh $(OUT)/kubernetes/bin kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl agnhost e2e.test ginkgo
	hack/install-etcd.sh $(OUT)/kubernetes/bin
	hack/install-kubernetes-images.sh $(OUT)/kubernetes/images

.PHONY: test
test: deps build deps-containerd ## Run every test: unit tests with -race, the root tests against real plugins, containerd with the go-cni drop-in.
	go test -race -count=1 -timeout 20m $(GO_TEST_FLAGS) ./...
	cd gocni && go test -race -count=1 -timeout 10m $(GO_TEST_FLAGS) ./...
	cd test/bench && go test -race -count=1 -timeout 10m $(GO_TEST_FLAGS) ./...

.PHONY: e2e
e2e: deps build ## Run only the root end-to-end tests against real plugins and crictl.
	go test -race -count=1 -timeout 20m -v $(GO_TEST_FLAGS) ./test/e2e/...

.PHONY: e2e-containerd
e2e-containerd: deps build deps-containerd deps-containerd-integration ## Run the containerd suites on stock containerd and on containerd with cnishim: the checks, critest's whole suite, containerd's CNI integration tests (see docs/containerd.md).
	go test -race -count=1 -timeout 40m -v -tags containerd_full $(GO_TEST_FLAGS) ./test/containerd/

.PHONY: e2e-kubelet
e2e-kubelet: deps build deps-containerd deps-kubelet ## Run the kubelet suite: a standalone kubelet on stock containerd and on containerd with cnishim, every check on both (see docs/kubelet.md).
	go test -race -count=1 -timeout 30m -v -tags kubelet_e2e $(GO_TEST_FLAGS) ./test/kubelet/

.PHONY: e2e-k8s
e2e-k8s: deps build deps-containerd deps-k8s ## Run the Kubernetes suite: clusters of netns nodes on stock containerd and on containerd with cnishim, judged by the upstream e2e [sig-network] specs (see docs/kubernetes.md).
	go test -count=1 -timeout 85m -v -tags k8s_e2e $(GO_TEST_FLAGS) ./test/k8s/

.PHONY: e2e-cluster
e2e-cluster: deps build $(if $(filter flannel,$(CLUSTER_NETWORK)),deps-flannel) ## Run the local cluster tests on CLUSTER_NETWORK (kindnet; or flannel) (see docs/cluster.md).
	go test -race -count=1 -timeout 20m -v $(GO_TEST_FLAGS) ./test/cluster/...

.PHONY: soak
soak: deps build ## Run the crash/restart and config churn soak tests at 5x and 10x their make test sizes, and the 4 x 250 pod cluster scale soak.
	CNISHIM_SOAK_ROUNDS=50 CNISHIM_SOAK_CHURN_OPS=10000 go test -race -count=1 -timeout 3h -v $(GO_TEST_FLAGS) ./test/soak/...
	$(MAKE) soak-cluster

.PHONY: soak-cluster
soak-cluster: deps build $(if $(filter flannel,$(CLUSTER_NETWORK)),deps-flannel) ## Run the 4 x 250 pod cluster scale soak on CLUSTER_NETWORK (kindnet; or flannel).
	CNISHIM_CLUSTER_SOAK_NODES=4 CNISHIM_CLUSTER_SOAK_PODS=250 CNISHIM_CLUSTER_SOAK_CLIENTS=16 CNISHIM_CLUSTER_SOAK_PEERS=3 \
	  go test -race -count=1 -timeout 3h -v -run TestClusterScale $(GO_TEST_FLAGS) ./test/cluster/

.PHONY: demo
demo: deps build ## Set up three pods on a built-in bridge network, prove they talk, tear down.
	$(BIN_DIR)/cnishim demo --cni-bin-dir $(CNI_BIN_DIR)

.PHONY: bench
bench: deps build deps-containerd deps-kubelet ## Run the benchmarks against go-cni and raw libcni, the containerd storms and the kubelet storms (see docs/benchmarks.md, docs/containerd.md, docs/kubelet.md); plots to docs/, tables to _output/bench.
	hack/bench.sh

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s).
	hack/fuzz.sh $(FUZZTIME)

.PHONY: verify
verify: ## gofmt, go vet, go mod tidy, staticcheck, import layers, API callers and golden files (hack/api.sh update), tests cited by docs.
	hack/verify.sh

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(OUT)
