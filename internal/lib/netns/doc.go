// Package netns creates, enters, checks and removes persistent network namespaces: a new
// namespace is bind-mounted on a file, so it outlives the thread that made it, as `ip netns add`
// does. Off Linux only IsNetNS exists, and it checks only that something is at the path.
package netns
