//go:build !linux

package cninetwork

import (
	"errors"
	"fmt"
	"os"
)

// checkNetNS returns nil if something exists at path; network namespaces are Linux's.
func checkNetNS(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// loopbackUp is not supported off Linux; use LoopbackPlugin or LoopbackOff.
func loopbackUp(path string) error {
	return errors.New("in-process loopback needs Linux; use LoopbackPlugin or LoopbackOff")
}
