//go:build linux

package host_test

import (
	"os"
	"testing"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
)

// TestMain removes the cnitest plugin the slow-network test builds.
func TestMain(m *testing.M) { os.Exit(plugintest.Main(m)) }
