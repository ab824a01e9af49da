// Package cninetwork is a kubelet-style CNI network plugin that a container runtime embeds: it
// turns a pod sandbox's network setup, inspection and teardown into libcni calls on the default
// network chosen by package confwatch. It speaks pods and networks, not any runtime's types:
// the adapters beside it convert (package pkg/adapter/cri for the CRI's, package npwg for the
// networks annotation).
//
// A Plugin is built with New and started with Run, which scans the configuration directory once and
// then watches it. SetUpPod attaches a pod to its networks (loopback, then the default network on
// eth0 and any extra networks side by side) and returns its IPs; TearDownPod detaches it with the
// configuration it was attached with, recorded by SetUpPod before any plugin ran (so a set-up cut
// off by a crash is covered), so a configuration change never leaks a pod's IP; GetPodNetworkStatus
// answers from memory or libcni's cache without entering the netns; CheckPod and GC run CNI CHECK
// and GC; Status reports readiness without I/O.
//
// A node's libcni cache directory (/var/lib/cni) is shared by every runtime on it. The Plugin
// keeps its own record of what it attached in a directory of its own (WithStateDir), and GC
// deletes only what those records name: another runtime's attachments, and stale ones on
// networks with disableGC, are never deleted (see GC).
//
// Plugins receive the CNI environment and PATH only, CNI_ARGS with the pod's identity
// (IgnoreUnknown, K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID),
// and, as runtimeConfig, the capability args their network declares: portMappings, bandwidth,
// ipRanges, dns, io.kubernetes.cri.pod-annotations and cgroupPath.
//
// Extra networks (Pod.ExtraNetworks) have the form of the Network Plumbing Working Group's pod
// annotation k8s.v1.cni.cncf.io/networks (package npwg reads it, and the cri adapter fills
// Pod.ExtraNetworks from it). A network is a valid network of
// the configuration directory, selected by name; a selection's namespace may only be empty,
// the pod's own or "default" (see NetworkSelection). A selection's ips, mac, portMappings and
// bandwidth become capability args of that network alone, its cni-args the "args": {"cni":
// ...} of its plugins' configuration, and its default-route the pod's default route once every
// network is attached (see NetworkSelection.DefaultRoute). A pod may be on at most
// WithMaxPodNetworks networks, the default one included (16 by default).
//
// Operations on one sandbox are serialized; operations on different sandboxes run in parallel
// within the admission bounds (see WithAdmission). The Plugin registers its Prometheus metrics,
// labelled by operation_type (set_up_pod, tear_down_pod, get_pod_network_status, check, status,
// gc), with the registerer given by WithRegisterer, and logs one line per operation at V(4)
// through the logger of the caller's context.
//
// Every operation waits and is bounded by one rule. It waits for its sandbox (other operations
// on it), then for a slot of its lane for each plugin chain it runs (one network's plugins for
// one pod): a set-up, teardown or rollback of a pod on three networks takes three slots, side by
// side when they are free. A free sandbox or slot is taken at once. The caller's context bounds
// the waits and the whole call; when it has no deadline, each wait is capped at the operation
// timeout, so nothing waits forever.
// The operation timeout (WithOperationTimeout) bounds each chain from its admission on, so
// time spent queued never eats a chain's budget. A set-up's rollback, and the deletions it
// sends, get a fresh wait and fresh budgets outside the caller's cancellation.
//
// A plugin's deadline is its chain's: the caller's context, capped by the operation timeout from
// the chain's admission. Each plugin binary runs as the leader of a process group of its own (on
// Linux), so a signal to the caller's group, such as a Ctrl-C at a terminal, does not reach it, and
// whatever it starts in that group (a delegated IPAM plugin, a helper) goes with it when the plugin
// is still running at its deadline: the whole group is then killed with SIGKILL, and the operation
// fails with ErrTimeout once the plugin has exited. Once a plugin exits, its stdout and stderr are
// read for 200 ms more; a process still holding them then is killed with the group and the pipes
// are closed, so it cannot hold the operation, and the result of a plugin that exited 0 is used all
// the same. A process of the group that closed its output before the plugin exited 0 is left
// running, as a plugin's own business. A plugin may write at most 4 MiB to stdout: one that writes
// more is killed with its group and fails with an error naming it. Of its stderr, quoted in its
// error, the first 64 KiB are kept and the rest is dropped. A process a plugin moved out of its
// group (setsid) is out of reach. The group is signalled through the plugin's pidfd, opened as it
// starts (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9 and later), so it can only ever reach the plugin's
// own group; an older kernel signals the group's ID before the plugin is reaped, which holds as
// long as nothing else in the embedding process reaps children it did not start.
//
// By default the bound on set-ups follows what their plugins spend (AdmissionLimits.AdaptiveAdd;
// Plugin.Admission says what it learnt). The Plugin's executor measures each plugin's CPU time, and
// that of every process it waited for, from the kernel's account when it is reaped; from each
// finished chain it learns the CPU it burns and the time it waits on something else, an IPAM
// server, a delegate, address detection, per network. The bound is then CPUs × (1 + 1.5 × wait /
// CPU), as thread pools are sized with half as much headroom again on the wait, at least the CPU
// count and at most 128 per CPU: chains that compute keep it near the CPU count, where throughput
// peaks; chains that wait 2 s on an IPAM server widen it until their CPU fills the CPUs. Only
// waiting every chain pays counts (each network's 10th percentile), not waiting chains impose on
// each other on a lock or a run queue, so contention does not widen the bound. Before any chain of
// a new network has finished (and while none has for 2 s), a queue that stands still while the
// plugins in flight are asleep (their process trees, read in /proc) widens the bound every 50 ms,
// by the CPUs over those in use (2 to 8 times).
package cninetwork
