# shellcheck shell=bash
# Pinned versions of every external tool the project builds or runs. Sourced by the other scripts;
# change a version here and nowhere else.
CNI_PLUGINS_VERSION="v1.10.0"
CRICTL_VERSION="v1.37.0"
# critest comes from the same cri-tools release as crictl.
CRITEST_VERSION="${CRICTL_VERSION}"
STATICCHECK_VERSION="v0.8.2"
GO_CNI_VERSION="v1.1.14"
# The plugins hack/install-cni-plugins.sh builds.
CNI_PLUGINS=(bridge host-local loopback portmap bandwidth firewall tuning static ptp macvlan)
# The flannel network of the local cluster (hack/install-flannel.sh): flanneld, etcd (its
# store, and the Kubernetes cluster's: hack/install-etcd.sh) and the flannel CNI plugin of the
# last containernetworking/plugins release that had it.
FLANNEL_VERSION="v0.28.10"
ETCD_VERSION="v3.6.16"
FLANNEL_CNI_PLUGIN_VERSION="v0.9.1"
# containerd and runc for the containerd runs (hack/install-containerd.sh): containerd stock and
# with go-cni replaced by the drop-in gocni/, the runc it runs, and the test images it imports.
CONTAINERD_VERSION="v2.4.2"
RUNC_VERSION="v1.5.3"
# Kubernetes for the kubelet runs and the Kubernetes cluster (hack/install-kubernetes.sh: the
# kubelet, the control plane, kube-proxy, kubectl, agnhost, e2e.test), built from the Kubernetes
# release module; its staging modules are released as v0.<minor>.<patch> of the same release.
KUBERNETES_VERSION="v1.37.2"
# CoreDNS, the local cluster's DNS server, built into the registry.k8s.io/coredns/coredns image
# of that tag and into agnhost's /coredns (hack/install-kubernetes-images.sh).
COREDNS_VERSION="v1.15.0"
