// Package micro holds the benchmark's micro-benchmarks, run with go test -bench: Status with
// a CNI 1.1 network (cnishim against go-cni) and GetPodNetworkStatus with 1,000 pods set up.
// Each reports ns/op and the p50 and p99 of single calls (p50-ns, p99-ns), benchstat-friendly.
package micro
