package synctrace

import (
	"slices"
	"testing"
)

// TestWatch: a watcher sees the syncs of its directory and of the files directly in it, and
// nothing once stopped.
func TestWatch(t *testing.T) {
	var got []Sync
	stop := Watch("/s/records/", func(s Sync) { got = append(got, s) })
	for _, s := range []Sync{
		{Path: "/s/records/.a.json.tmp-1"},
		{Path: "/s/records", Dir: true},
		{Path: "/s", Dir: true},
		{Path: "/s/records/sub/x"},
		{Path: "/s/other/.a.json.tmp-1"},
	} {
		Report(s)
	}
	stop()
	stop() // a second stop does nothing
	Report(Sync{Path: "/s/records", Dir: true})
	want := []Sync{{Path: "/s/records/.a.json.tmp-1"}, {Path: "/s/records", Dir: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("saw %v; want %v", got, want)
	}
}
