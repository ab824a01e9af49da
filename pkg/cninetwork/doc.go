// Package cninetwork is a kubelet-style CNI network plugin that a CRI runtime embeds: it turns a
// pod sandbox's network setup, inspection and teardown into libcni calls on the default network
// chosen by package confwatch.
package cninetwork
