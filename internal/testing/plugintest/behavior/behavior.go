// Package behavior defines the JSON documents shared by the cnitest test plugin
// (test/plugins/cnitest) and the tests that drive it: the behavior file that tells the plugin
// what to do, and the record line it appends for every invocation.
//
// The plugin finds its behavior file, in order: the "behavior" key of the network config on
// stdin (a path); the CNITEST_BEHAVIOR_FILE environment variable; the file "<binary>.behavior.json"
// next to the binary as invoked. VERSION never sees a network config, so the supported versions
// come from the environment or the file beside the binary. Without any behavior file the plugin
// supports every version and succeeds.
//
// When cnitest delegates to an IPAM plugin that is itself cnitest (installed under another
// name), the delegate sees the same config; it then takes its behavior from the "behavior" key
// of the config's "ipam" section, else from the file beside its own binary, and ignores the
// top-level key and CNITEST_BEHAVIOR_FILE.
package behavior

import "encoding/json"

// EnvFile is the environment variable naming a behavior file.
const EnvFile = "CNITEST_BEHAVIOR_FILE"

// EnvDelegated is set to "1" in the environment of an IPAM plugin cnitest delegates to.
const EnvDelegated = "CNITEST_DELEGATED"

// ConfKey is the network config key naming a behavior file.
const ConfKey = "behavior"

// SidecarSuffix is appended to the binary's path to find its own behavior file.
const SidecarSuffix = ".behavior.json"

// File tells the plugin what to do.
type File struct {
	// Versions lists the CNI spec versions VERSION reports; empty means every version the
	// plugin's libcni knows.
	Versions []string `json:"versions,omitempty"`
	// Record, if set, is a file to which each invocation is appended as one JSON Record line.
	Record string `json:"record,omitempty"`
	// Counters, if set, is a directory holding per-command call counters, needed by OnCall.
	// Without it the counters live beside Record ("<record>.<COMMAND>.count").
	Counters string `json:"counters,omitempty"`
	// Commands maps a CNI command (ADD, DEL, CHECK, GC, STATUS, VERSION) to its action. A
	// command without an entry succeeds.
	Commands map[string]Action `json:"commands,omitempty"`
}

// What the plugin does for a command (Action.Do).
const (
	// Succeed prints the result (ADD) or nothing (other commands) and exits 0.
	Succeed = "succeed"
	// Hang blocks until the plugin is killed.
	Hang = "hang"
	// Exit exits with ExitCode (default 1) and prints nothing.
	Exit = "exit"
	// Garbage prints something that is not JSON and exits 0.
	Garbage = "garbage"
	// Truncated prints the first half of the result's JSON and exits 0.
	Truncated = "truncated"
	// Error prints a CNI error with Code, Msg and Details and exits 1.
	Error = "error"
)

// Action is what the plugin does for one command. Steps run in order: count the call (when
// File.Counters or File.Record is set); record the invocation; sleep SleepMS; delegate to the
// IPAM plugin if DelegateIPAM; then Do (on every call, or only on call OnCall, the others
// succeeding).
type Action struct {
	// Do is one of Succeed (the default when empty), Hang, Exit, Garbage, Truncated, Error.
	Do string `json:"do,omitempty"`
	// OnCall, when above zero, applies Do only to the OnCall-th call (1-based) of this
	// command, counted across processes in a counter file; every other call succeeds.
	OnCall int `json:"onCall,omitempty"`
	// SleepMS delays the command by this many milliseconds before anything else happens.
	SleepMS int `json:"sleepMs,omitempty"`
	// ExitCode is the status for Exit; zero means 1.
	ExitCode int `json:"exitCode,omitempty"`
	// Code, Msg and Details make the CNI error printed by Error; Code zero means 999.
	Code    uint   `json:"code,omitempty"`
	Msg     string `json:"msg,omitempty"`
	Details string `json:"details,omitempty"`
	// DelegateIPAM runs the IPAM plugin named by the config's ipam.type first (ADD and DEL,
	// through libcni's invoke.DelegateAdd and DelegateDel), so a test can make the plugin
	// fail after an address was allocated. On ADD, a successful result includes the IPAM
	// result's addresses.
	DelegateIPAM bool `json:"delegateIPAM,omitempty"`
	// IPAMDelegate, if set, names the plugin DelegateIPAM runs instead of the config's
	// ipam.type. It lets cnitest be the IPAM plugin itself (ipam.type naming cnitest) and
	// hand the allocation on to a real IPAM, e.g. host-local, after SleepMS: a slow IPAM
	// with real addresses.
	IPAMDelegate string `json:"ipamDelegate,omitempty"`
	// Result, if set, is printed verbatim on ADD success.
	Result json.RawMessage `json:"result,omitempty"`
	// IPs and Interfaces make the ADD result when Result is not set. Without them, and
	// without IPAM, ADD passes the config's prevResult through when there is one, and
	// otherwise returns one interface named CNI_IFNAME in CNI_NETNS and no IPs.
	IPs        []IP        `json:"ips,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// IP is one address of an ADD result.
type IP struct {
	// Address is a CIDR, e.g. "10.88.0.5/16".
	Address string `json:"address"`
	// Gateway is an optional IP.
	Gateway string `json:"gateway,omitempty"`
	// Interface is an optional index into the result's interfaces; it may be out of range
	// on purpose.
	Interface *int `json:"interface,omitempty"`
}

// Interface is one interface of an ADD result.
type Interface struct {
	Name    string `json:"name"`
	Mac     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

// Record is one invocation, as appended to File.Record.
type Record struct {
	// Command is CNI_COMMAND.
	Command string `json:"command"`
	// Binary is the path the plugin was invoked as.
	Binary string `json:"binary"`
	// Stdin is what the plugin read on stdin.
	Stdin string `json:"stdin"`
	// Env holds the CNI_* and CNITEST_* variables, as "KEY=value".
	Env []string `json:"env"`
	// PID is the plugin's process ID.
	PID int `json:"pid"`
	// Call is the command's call number (1-based) when counters are in use, else 0.
	Call int `json:"call,omitempty"`
}
