//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestWriteStatusNote(t *testing.T) {
	row := func(ns float64) map[string][]float64 { return map[string][]float64{"ns/op": {ns}} }
	for _, c := range []struct {
		name    string
		values  map[string]map[string][]float64
		want    []string
		notWant []string
	}{
		{"all rows", map[string]map[string][]float64{
			"BenchmarkStatus/impl=cnishim":             row(100),
			"BenchmarkStatus/impl=libcni-cnishim-exec": row(4e6),
			"BenchmarkStatus/impl=go-cni":              row(5e6),
		}, []string{"may be up to the poll interval old (5s", "50000× cnishim's cached answer", "go-cni takes 1.25× its time."}, nil},
		{"no like-for-like row", map[string]map[string][]float64{
			"BenchmarkStatus/impl=cnishim": row(100),
			"BenchmarkStatus/impl=go-cni":  row(5e6),
		}, []string{"may be up to the poll interval old", "50000×"}, []string{"Like for like"}},
		{"no cnishim row", map[string]map[string][]float64{
			"BenchmarkStatus/impl=go-cni": row(5e6),
		}, nil, []string{"Status"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			writeStatusNote(&b, c.values)
			for _, w := range c.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("note lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("note has %q:\n%s", w, b.String())
				}
			}
		})
	}
}
