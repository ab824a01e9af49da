package cninetwork_test

import (
	"context"
	"fmt"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// A CRI runtime's RunPodSandbox and StopPodSandbox, reduced to their network part.
func Example() {
	ctx := context.Background()
	p, err := cninetwork.New(
		cninetwork.WithConfDir("/etc/cni/net.d"),
		cninetwork.WithBinDirs("/opt/cni/bin"),
	)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	if err := p.Run(ctx); err != nil {
		panic(err)
	}
	if err := p.Status(ctx); err != nil {
		fmt.Println("node network not ready:", err)
		return
	}

	pod := &cninetwork.Pod{
		SandboxID: "4b2e0c", NetNS: "/var/run/netns/4b2e0c",
		Name: "web", Namespace: "default", UID: "6f1c",
		PortMappings: []cninetwork.PortMapping{{ContainerPort: 80, HostPort: 8080}},
	}
	status, err := p.SetUpPod(ctx, pod)
	if err != nil {
		fmt.Println("set up:", err) // names the pod, the network and the plugin
		return
	}
	fmt.Println("pod IP:", status.IPs[0])

	if err := p.TearDownPod(ctx, pod); err != nil {
		fmt.Println("tear down:", err)
	}
}
