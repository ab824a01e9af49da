package criserver

import (
	"github.com/cnishim/cnishim/pkg/cninetwork"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podFromSandboxConfig describes a sandbox for the network plugin.
func podFromSandboxConfig(id, netnsPath string, cfg *runtimeapi.PodSandboxConfig) *cninetwork.Pod {
	md := cfg.GetMetadata()
	return &cninetwork.Pod{
		SandboxID:    id,
		Name:         md.GetName(),
		Namespace:    md.GetNamespace(),
		UID:          md.GetUid(),
		NetNS:        netnsPath,
		Annotations:  cfg.GetAnnotations(),
		PortMappings: cfg.GetPortMappings(),
		DNS:          cfg.GetDnsConfig(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(),
	}
}
