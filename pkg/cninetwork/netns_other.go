//go:build !linux

package cninetwork

import "errors"

// loopbackUp is not supported off Linux; use LoopbackPlugin or LoopbackOff.
func loopbackUp(path string) error {
	return errors.New("in-process loopback needs Linux; use LoopbackPlugin or LoopbackOff")
}
