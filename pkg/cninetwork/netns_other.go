//go:build !linux

package cninetwork

import (
	"errors"
	"net"
)

// loopbackUp is not supported off Linux; use WithLoopbackPlugin or WithoutLoopback.
func loopbackUp(path string) error {
	return errors.New("in-process loopback needs Linux; use WithLoopbackPlugin or WithoutLoopback")
}

// replaceDefaultRoutes is not supported off Linux.
func replaceDefaultRoutes(path, ifName string, gateways []net.IP) error {
	return errors.New("default-route needs Linux")
}
