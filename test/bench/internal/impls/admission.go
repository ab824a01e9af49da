package impls

import (
	"fmt"

	"github.com/cnishim/cnishim/internal/admission"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// admissionOption is the one seam between the benchmark and cnishim's admission limits: it
// returns the cninetwork option that sets them. Until cninetwork has that option, the
// bounded variants are reported as not measured; once it has, the body becomes
//
//	return cninetwork.WithAdmission(l), nil
func admissionOption(l Limits) (cninetwork.Option, error) {
	return nil, fmt.Errorf("cnishim: admission limits (%s): %w", LimitsString(&l), ErrUnavailable)
}

// DefaultLimits returns cnishim's default admission limits on this machine.
func DefaultLimits() Limits { return admission.DefaultLimits() }
