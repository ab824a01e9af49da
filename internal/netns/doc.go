// Package netns creates, enters, checks and removes persistent network namespaces: a new
// namespace is bind-mounted on a file, so it outlives the thread that made it, as `ip netns add`
// does. Off Linux only IsNetNS exists, and it checks only that something is at the path.
//
// It is one of the helpers pkg/ builds on: it imports nothing of pkg/, and the CRI runtime
// built on pkg/ lives apart, under internal/runtime.
package netns
