// Package cni is a drop-in for containerd's go-cni (github.com/containerd/go-cni, v1.1.14):
// the same package API, built on cnishim's pkg/cninetwork and pkg/confwatch. A runtime takes
// it with one line in its go.mod and no other change:
//
//	replace github.com/containerd/go-cni => github.com/cnishim/cnishim/gocni <version>
//
// Every exported name of go-cni v1.1.14 is here with the same declaration (a test checks it
// against go-cni's source), and the contract containerd relies on is kept: Setup returns the
// pod's IPs as Interfaces["eth0"], with the host-side interfaces, gateways, routes and DNS the
// plugins returned (read back from libcni's cache); GetConfig reports the networks for crictl
// info; Status fails while fewer networks than WithMinNetworkCount are ready; Load wraps ErrLoad
// when the directory holds no valid network; the pod annotations capability reaches the
// plugins that declare it.
//
// Where it differs, it differs on purpose:
//   - The configuration directory is watched (package confwatch): a Load that asks again for
//     its networks changes nothing, a broken or half-written file is skipped rather than
//     emptying the networks, and a directory deleted and re-created comes back without a Load.
//   - Status answers from memory; CNI STATUS is polled in the background, not exec'd per call.
//   - Remove tears a pod down with the configuration it was set up with, recorded before its
//     first plugin ran (so a set-up cut off by a crash is covered), whatever the directory
//     holds now and whether or not a network is ready; it is idempotent, also with an empty or
//     vanished netns path, without matching plugins' error strings.
//   - Plugin chains run within the Plugin's admission bounds (WithPluginOptions), each plugin in
//     a process group of its own, killed at its deadline, its output capped.
//   - The NPWG networks annotation (k8s.v1.cni.cncf.io/networks), which containerd passes in
//     the pod annotations capability, attaches the pod to more networks of the directory.
//   - SetupSerially is Setup: a pod's networks are attached side by side, each chain on its own.
//   - The default network's interface is eth0 whatever WithInterfacePrefix says; the prefix
//     names the directory's further networks (WithPluginMaxConfNum). Networks given as bytes or
//     files get eth0, eth1, ... in the order given, and cannot be mixed with the directory's in
//     one Load.
//   - Plugins get the pod's identity in CNI_ARGS (K8S_POD_*) and the capabilities the Plugin
//     knows (portMappings, bandwidth, dns, cgroupPath, the pod annotations); other CNI_ARGS
//     keys and capabilities are not passed, and ipRanges are the node's (Plugin.SetPodCIDRs).
//
// Beyond go-cni's options: WithCacheDir (libcni's cache, /var/lib/cni by default),
// WithStateDir (where the Plugin's records are kept; by default one directory per
// configuration directory under the cache directory) and WithPluginOptions. The CNI New returns
// also has Close (through io.Closer), which stops its watcher; go-cni's callers never close it.
package cni
