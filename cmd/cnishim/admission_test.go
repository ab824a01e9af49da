//go:build linux

package main

import (
	"flag"
	"io"
	"testing"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

func TestMaxParallelSetupsFlag(t *testing.T) {
	def := cninetwork.DefaultAdmissionLimits()
	for _, tc := range []struct {
		args         []string
		wantAdd      int
		wantAdaptive bool
		wantErr      bool
	}{
		{args: nil, wantAdd: def.Add, wantAdaptive: true},
		{args: []string{"--max-parallel-setups", "auto"}, wantAdd: def.Add, wantAdaptive: true},
		{args: []string{"--max-parallel-setups", "8"}, wantAdd: 8},
		{args: []string{"--max-parallel-setups", "0"}, wantAdd: 0},
		{args: []string{"--max-parallel-setups", "-1"}, wantErr: true},
		{args: []string{"--max-parallel-setups", "many"}, wantErr: true},
	} {
		var a admissionFlags
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a.register(fs)
		err := fs.Parse(tc.args)
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: parse error %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if l := a.limits(); l.Add != tc.wantAdd || l.AdaptiveAdd != tc.wantAdaptive || l.Del != def.Del {
			t.Errorf("%v: limits %+v, want add %d adaptive %v del %d", tc.args, l, tc.wantAdd, tc.wantAdaptive, def.Del)
		}
	}
}
