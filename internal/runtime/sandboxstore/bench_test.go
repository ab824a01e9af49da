package sandboxstore

import (
	"testing"
)

// BenchmarkLifecycle measures one sandbox's record writes: create, update to ready, delete.
func BenchmarkLifecycle(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := record(NewID(), "pod", uint32(i), int64(i))
		if err := s.Create(r); err != nil {
			b.Fatal(err)
		}
		r.State = StateReady
		if err := s.Update(r); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(r.ID); err != nil {
			b.Fatal(err)
		}
	}
}
