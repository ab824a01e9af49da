package impls

import "github.com/cnishim/cnishim/pkg/cninetwork"

// admissionOption is the one seam between the benchmark and cnishim's admission limits: it
// returns the cninetwork option that sets them.
func admissionOption(l Limits) (cninetwork.Option, error) {
	return cninetwork.WithAdmission(l), nil
}

// DefaultLimits returns cnishim's default admission limits on this machine.
func DefaultLimits() Limits { return cninetwork.DefaultAdmissionLimits() }
