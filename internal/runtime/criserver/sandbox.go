//go:build linux

package criserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/pkg/adapter/cri"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// RunPodSandbox writes the sandbox's record (state "creating"), creates its network namespace
// under Config.NetNSDir, sets up its network and marks it ready. On any failure it tears down the
// network, removes the namespace and deletes the record before returning an error saying why; if
// that rollback itself fails, the record stays (NOTREADY, with the reason) so that stopping or
// removing the sandbox retries the teardown, and nothing is forgotten.
//
// A sandbox that asks for the node's network namespace (NamespaceMode NODE) gets no namespace
// and no CNI set-up, as in the kubelet's runtimes.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, retErr error) {
	cfg := req.GetConfig()
	md := cfg.GetMetadata()
	if md == nil || md.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "run pod sandbox: config has no metadata name")
	}
	hostNetwork := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	podRef := klog.KRef(md.GetNamespace(), md.GetName())
	what := fmt.Sprintf("run pod sandbox for pod %s", cniargs.QuoteUnprintable(podRef.String()))

	// Refuse early, before anything is created, when no network is ready.
	if !hostNetwork {
		if err := s.cfg.Network.Status(ctx); err != nil {
			return nil, grpcError(what, err)
		}
	}

	id := sandboxstore.NewID()
	unlock, err := s.sandboxLocks.Lock(ctx, id)
	if err != nil {
		return nil, grpcError(what, err)
	}
	defer unlock()
	logger := klog.FromContext(ctx).WithValues("pod", podRef, "podSandboxID", id)
	ctx = klog.NewContext(ctx, logger)

	rec := sandboxstore.Record{
		ID:             id,
		State:          sandboxstore.StateCreating,
		CreatedAt:      time.Now().UnixNano(),
		HostNetwork:    hostNetwork,
		RuntimeHandler: req.GetRuntimeHandler(),
		Config:         cfg,
	}
	// pod is what the plugin sets up; nil for a host-network sandbox.
	var pod *cninetwork.Pod
	if !hostNetwork {
		// The path is recorded before the namespace exists, so a restart after a crash finds
		// and removes it.
		rec.NetNSPath = s.netnsPath(id)
		// Refuse a pod the plugin would refuse before anything exists for it.
		var err error
		if pod, err = podOf(rec); err != nil {
			return nil, grpcError(what, err)
		}
		if err := s.cfg.Network.ValidatePod(pod); err != nil {
			return nil, grpcError(what, err)
		}
	}
	if err := s.cfg.Store.Create(rec); err != nil {
		return nil, grpcError(what, err)
	}

	// setUpErr is SetUpPod's error: the plugin has rolled its set-up back then, and the
	// server's rollback sends no DEL of its own unless the plugin's rollback failed.
	var setUpErr error
	defer func() {
		if retErr == nil {
			return
		}
		// Roll back under a fresh bounded context: the request's may be the reason we fail.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CleanupTimeout)
		defer cancel()
		release := s.release
		if setUpErr != nil && !errors.Is(setUpErr, cninetwork.ErrRollbackFailed) {
			release = s.removeNetNS
		}
		if err := release(cctx, rec); err != nil {
			logger.Error(err, "Rolling back failed sandbox set-up")
			// The record stays "creating" (NOTREADY to clients), so that stopping or removing
			// the sandbox, or the next start, tears it down again.
			rec.State = sandboxstore.StateCreating
			rec.IPs = nil
			rec.Reason = fmt.Sprintf("%s: set-up failed and its rollback failed (%v); stop or remove the sandbox to retry the teardown", ReasonRollbackFailed, err)
			if uerr := s.cfg.Store.Update(rec); uerr != nil {
				logger.Error(uerr, "Recording failed rollback")
			}
			retErr = status.Errorf(status.Code(retErr), "%s; rollback failed, sandbox %s kept NOTREADY for removal: %v",
				status.Convert(retErr).Message(), id, err)
			return
		}
		if err := s.cfg.Store.Delete(id); err != nil {
			logger.Error(err, "Deleting record of failed sandbox")
		}
	}()

	if !hostNetwork {
		if _, err := netns.Create(s.cfg.NetNSDir, id); err != nil {
			return nil, grpcError(what, err)
		}
		st, err := s.cfg.Network.SetUpPod(ctx, pod)
		if err != nil {
			setUpErr = err
			return nil, grpcError(what, err)
		}
		for _, ip := range st.IPs {
			rec.IPs = append(rec.IPs, ip.String())
		}
	}
	rec.State = sandboxstore.StateReady
	if err := s.cfg.Store.Update(rec); err != nil {
		return nil, grpcError(what, err)
	}
	logger.V(2).Info("Pod sandbox ready", "ips", rec.IPs)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *Server) netnsPath(id string) string { return filepath.Join(s.cfg.NetNSDir, id) }

// release tears down the sandbox's network, then removes its network namespace. A namespace
// whose teardown failed is kept, as containerd does, so that the retried teardown runs in it
// rather than with an empty CNI_NETNS. It is idempotent.
func (s *Server) release(ctx context.Context, rec sandboxstore.Record) error {
	if rec.HostNetwork {
		return nil
	}
	pod, _ := podOf(rec) // a teardown goes by what the plugin recorded; the pod's other fields are a fallback
	if pod.NetNS != "" {
		// A namespace that was never mounted, or is gone, is no namespace to the plugins.
		if ok, _ := netns.IsNetNS(pod.NetNS); !ok {
			pod.NetNS = ""
		}
	}
	if err := s.cfg.Network.TearDownPod(ctx, pod); err != nil {
		return err
	}
	return s.removeNetNS(ctx, rec)
}

// removeNetNS removes the sandbox's network namespace, for a sandbox with no network to tear
// down.
func (s *Server) removeNetNS(_ context.Context, rec sandboxstore.Record) error {
	if rec.NetNSPath == "" {
		return nil
	}
	return netns.Remove(rec.NetNSPath)
}

// resolve finds a sandbox by ID or unique ID prefix.
func (s *Server) resolve(id string) (sandboxstore.Record, error) {
	return s.cfg.Store.Get(id)
}

// StopPodSandbox tears down the sandbox's network and removes its network namespace, as
// containerd does; the record stays, NOTREADY, until RemovePodSandbox. Stopping a stopped
// sandbox does nothing, and stopping an unknown one succeeds, as the CRI asks and containerd
// does: nothing of it is left to reclaim.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	rec, err := s.resolve(req.GetPodSandboxId())
	if errors.Is(err, sandboxstore.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("stop pod sandbox", err)
	}
	unlock, err := s.sandboxLocks.Lock(ctx, rec.ID)
	if err != nil {
		return nil, grpcError("stop pod sandbox", err)
	}
	defer unlock()
	rec, err = s.cfg.Store.Get(rec.ID) // it may have changed while we waited
	if errors.Is(err, sandboxstore.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("stop pod sandbox", err)
	}
	if err := s.stop(ctx, rec); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stop releases a sandbox's network and marks it NOTREADY. Called with the sandbox's lock held.
func (s *Server) stop(ctx context.Context, rec sandboxstore.Record) error {
	if rec.State == sandboxstore.StateNotReady {
		return nil
	}
	md := rec.Config.GetMetadata()
	logger := klog.FromContext(ctx).WithValues("pod", klog.KRef(md.GetNamespace(), md.GetName()), "podSandboxID", rec.ID)
	ctx = klog.NewContext(ctx, logger)
	what := fmt.Sprintf("stop pod sandbox %s (pod %s)", rec.ID, cniargs.QuoteUnprintable(md.GetNamespace()+"/"+md.GetName()))
	if rec.State == sandboxstore.StateReady {
		// Recorded before the first DEL: a ready sandbox whose teardown a crash cuts off, or
		// that fails, must not come back READY with part of its network released.
		rec.State = sandboxstore.StateStopping
		if err := s.cfg.Store.Update(rec); err != nil {
			return grpcError(what, err)
		}
	}
	if err := s.release(ctx, rec); err != nil {
		return grpcError(what, err)
	}
	if rec.State == sandboxstore.StateCreating {
		rec.Reason = ReasonSetUpReleased
	}
	rec.State = sandboxstore.StateNotReady
	rec.IPs = nil
	if err := s.cfg.Store.Update(rec); err != nil {
		return grpcError(what, err)
	}
	logger.V(2).Info("Pod sandbox stopped")
	return nil
}

// RemovePodSandbox stops the sandbox if needed, then deletes its record. Removing an unknown
// sandbox succeeds, as the CRI asks and containerd does.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	rec, err := s.resolve(req.GetPodSandboxId())
	if errors.Is(err, sandboxstore.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("remove pod sandbox", err)
	}
	unlock, err := s.sandboxLocks.Lock(ctx, rec.ID)
	if err != nil {
		return nil, grpcError("remove pod sandbox", err)
	}
	defer unlock()
	rec, err = s.cfg.Store.Get(rec.ID)
	if errors.Is(err, sandboxstore.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("remove pod sandbox", err)
	}
	if err := s.stop(ctx, rec); err != nil {
		return nil, err
	}
	// A stopped sandbox has no namespace; remove the file again in case a crash came between.
	if rec.NetNSPath != "" {
		if err := netns.Remove(rec.NetNSPath); err != nil {
			return nil, grpcError("remove pod sandbox "+rec.ID, err)
		}
	}
	if err := s.cfg.Store.Delete(rec.ID); err != nil {
		return nil, grpcError("remove pod sandbox "+rec.ID, err)
	}
	klog.FromContext(ctx).V(2).Info("Pod sandbox removed", "podSandboxID", rec.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// criState maps a record's state to the CRI's: only a ready record is SANDBOX_READY.
func criState(st sandboxstore.State) runtimeapi.PodSandboxState {
	if st == sandboxstore.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// SandboxInfo is the JSON object under the "info" key of a verbose PodSandboxStatus answer.
type SandboxInfo struct {
	// NetNSPath is the sandbox's network namespace; the CRI's LinuxPodSandboxStatus has no
	// field for a path, so it is reported here (empty once the sandbox is stopped).
	NetNSPath string `json:"netnsPath,omitempty"`
	// State is cnishim's own state of the record: creating, ready or notready.
	State string `json:"state"`
	// Reason says why a sandbox is NOTREADY other than by a plain stop.
	Reason string `json:"reason,omitempty"`
	// HostNetwork is true for a sandbox in the node's network namespace.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// Attachments lists the networks the pod is attached to, as the plugin reports them.
	Attachments []AttachmentInfo `json:"attachments,omitempty"`
	// NetworkStatus is the Network Plumbing Working Group's network-status document of the
	// pod's attachments, the default network first, ready to copy into the pod annotation
	// k8s.v1.cni.cncf.io/network-status.
	NetworkStatus []NetworkStatus `json:"networkStatus,omitempty"`
	// NetworkStatusError says why the plugin could not report the attachments.
	NetworkStatusError string `json:"networkStatusError,omitempty"`
	// Config is the sandbox's configuration as it was sent, in the CRI's JSON form.
	Config json.RawMessage `json:"config"`
}

// AttachmentInfo is one network attachment in SandboxInfo.
type AttachmentInfo struct {
	Network string   `json:"network"`
	IfName  string   `json:"ifName"`
	IPs     []string `json:"ips"`
	MAC     string   `json:"mac,omitempty"`
}

// NetworkStatus is one element of the Network Plumbing Working Group's network-status
// document. Name is the network's name in the configuration directory (networks have no
// namespace here).
type NetworkStatus struct {
	Name      string            `json:"name"`
	Interface string            `json:"interface,omitempty"`
	IPs       []string          `json:"ips,omitempty"`
	MAC       string            `json:"mac,omitempty"`
	Default   bool              `json:"default,omitempty"`
	DNS       *NetworkStatusDNS `json:"dns,omitempty"`
}

// NetworkStatusDNS is the DNS of a NetworkStatus, as the network's result gave it.
type NetworkStatusDNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// PodSandboxStatus returns the sandbox's state, creation time, metadata, labels, annotations
// and IPs. The verbose answer adds "info", a SandboxInfo JSON object with the netns path.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	rec, err := s.resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError("pod sandbox status", err)
	}
	cfg := rec.Config
	nsMode := runtimeapi.NamespaceMode_POD
	if rec.HostNetwork {
		nsMode = runtimeapi.NamespaceMode_NODE
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:             rec.ID,
		Metadata:       cfg.GetMetadata(),
		State:          criState(rec.State),
		CreatedAt:      rec.CreatedAt,
		Network:        cri.NetworkStatus(recordedIPs(rec)),
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{Network: nsMode}}},
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: rec.RuntimeHandler,
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if !req.GetVerbose() {
		return resp, nil
	}
	info := SandboxInfo{
		State:       string(rec.State),
		Reason:      rec.Reason,
		HostNetwork: rec.HostNetwork,
	}
	if info.Config, err = protojson.Marshal(cfg); err != nil {
		return nil, status.Errorf(codes.Internal, "pod sandbox %s: info: %v", rec.ID, err)
	}
	if rec.State == sandboxstore.StateReady && !rec.HostNetwork {
		info.NetNSPath = rec.NetNSPath
		// Only the sandbox ID is read; the name is for the log. The pod's config is not parsed
		// again on a call the kubelet makes this often.
		md := cfg.GetMetadata()
		ns, err := s.cfg.Network.GetPodNetworkStatus(ctx, &cninetwork.Pod{SandboxID: rec.ID, Name: md.GetName(), Namespace: md.GetNamespace()})
		if err != nil {
			info.NetworkStatusError = err.Error()
		}
		var attachments []cninetwork.AttachmentStatus
		if ns != nil {
			attachments = ns.Attachments
		}
		for _, a := range attachments {
			ai := AttachmentInfo{Network: a.Network, IfName: a.IfName, MAC: a.MAC}
			for _, ip := range a.IPs {
				ai.IPs = append(ai.IPs, ip.String())
			}
			info.Attachments = append(info.Attachments, ai)
			ns := NetworkStatus{Name: a.Network, Interface: a.IfName, IPs: ai.IPs, MAC: a.MAC, Default: a.Default}
			if d := a.DNS; d != nil {
				ns.DNS = &NetworkStatusDNS{Nameservers: d.Nameservers, Domain: d.Domain, Search: d.Search, Options: d.Options}
			}
			info.NetworkStatus = append(info.NetworkStatus, ns)
		}
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "pod sandbox %s: info: %v", rec.ID, err)
	}
	resp.Info = map[string]string{"info": string(b)}
	return resp, nil
}

// recordedIPs returns the IPs a ready sandbox's set-up got, as its record keeps them, in the
// plugin's form.
func recordedIPs(rec sandboxstore.Record) *cninetwork.PodNetworkStatus {
	if rec.State != sandboxstore.StateReady {
		return nil
	}
	st := &cninetwork.PodNetworkStatus{}
	for _, s := range rec.IPs {
		if ip := net.ParseIP(s); ip != nil {
			st.IPs = append(st.IPs, ip)
		}
	}
	return st
}

// ListPodSandbox lists the sandboxes matching the filter: ID (a full ID, or a prefix of exactly
// one, as elsewhere; an ambiguous prefix is InvalidArgument, an unknown one matches nothing),
// state, and labels (all of LabelSelector's pairs must match).
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.list(req.GetFilter())
	if err != nil {
		return nil, grpcError("list pod sandboxes", err)
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// StreamPodSandboxes sends the sandboxes matching the filter, as ListPodSandbox, in one message
// (none when there are none), then ends the stream.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	items, err := s.list(req.GetFilter())
	if err != nil {
		return grpcError("stream pod sandboxes", err)
	}
	if len(items) == 0 {
		return nil
	}
	return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: items})
}

func (s *Server) list(f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	id := f.GetId()
	if id != "" {
		rec, err := s.cfg.Store.Get(id)
		switch {
		case errors.Is(err, sandboxstore.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		id = rec.ID
	}
	var out []*runtimeapi.PodSandbox
	for _, rec := range s.cfg.Store.List() {
		if id != "" && rec.ID != id {
			continue
		}
		if f.GetState() != nil && criState(rec.State) != f.GetState().GetState() {
			continue
		}
		if !matchLabels(rec.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id:             rec.ID,
			Metadata:       rec.Config.GetMetadata(),
			State:          criState(rec.State),
			CreatedAt:      rec.CreatedAt,
			Labels:         rec.Config.GetLabels(),
			Annotations:    rec.Config.GetAnnotations(),
			RuntimeHandler: rec.RuntimeHandler,
		})
	}
	return out, nil
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// podOf describes a sandbox for the network plugin. The error, wrapping
// cninetwork.ErrInvalidPod, says what of the sandbox's configuration cannot be honoured; the
// Pod is still good for a teardown.
func podOf(rec sandboxstore.Record) (*cninetwork.Pod, error) {
	return cri.PodFromSandboxConfig(rec.ID, rec.NetNSPath, rec.Config)
}
