//go:build !linux

package netns

import (
	"fmt"
	"os"
)

// IsNetNS reports whether something exists at path, as network namespaces are Linux's; the
// error wraps os.ErrNotExist if nothing is there.
func IsNetNS(path string) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		return false, fmt.Errorf("netns %s: %w", path, err)
	}
	return true, nil
}
