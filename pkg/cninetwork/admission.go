package cninetwork

import "context"

// lane names an admission lane.
type lane int

const (
	laneAdd lane = iota
	laneDel
	laneCheck
	laneStatus
	laneGC
)

// admit waits for a slot in lane; release frees it.
func (p *Plugin) admit(ctx context.Context, l lane) (release func(), err error) {
	return func() {}, nil
}
