package main

import (
	"strings"
	"testing"
)

// Bad flags fail before anything touches the machine, naming the flag and a value that works.
func TestBenchNetFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--link", "fast"}, []string{"--link", "100mbit"}},
		{[]string{"--link", "50kbit"}, []string{"--link", "100kbit"}},
		{[]string{"--ranks", "1,4"}, []string{"--ranks", "2,4,8"}},
		{[]string{"--ranks", "2,x"}, []string{"--ranks", "2,4,8"}},
		{[]string{"--ranks", "33"}, []string{"--ranks", "2,4,8"}},
		{[]string{"--size-mib", "0"}, []string{"--size-mib", "8"}},
		{[]string{"--reps", "0"}, []string{"--reps", "3"}},
		{[]string{"--timeout", "0s"}, []string{"--timeout", "10m"}},
		{[]string{"--tcp", "cubic;reboot"}, []string{"--tcp", "cubic"}},
	} {
		err := wkd(append([]string{"bench-net"}, c.args...)...)
		if err == nil {
			t.Errorf("bench-net %v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("bench-net %v: error %q does not mention %q", c.args, err, w)
			}
		}
	}
}


// The other benchmarks' bad flags too: each error names its flag and a value that works.
func TestBenchFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench-allreduce", "--nodes", "0"}, "like 2,3,4"},
		{[]string{"bench-allreduce", "--sizes", "1,x"}, "like 1,16,64"},
		{[]string{"bench-allreduce", "--chunk", "6"}, "like 524288"},
		{[]string{"bench-allreduce", "--reps", "0"}, "like 5"},
		{[]string{"bench-allreduce", "--raw-msg-kib", "2048"}, "like 1024"},
		{[]string{"bench-allreduce", "--timeout", "-1s"}, "like 3m"},
		{[]string{"bench-overlap", "--nodes", "1"}, "like 2"},
		{[]string{"bench-overlap", "--steps", "5"}, "like 30"},
		{[]string{"bench-overlap", "--size", "8"}, "like 64"},
	} {
		err := wkd(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.args[1]) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("wkd %v: error %v, want one naming %s and %q", c.args, err, c.args[1], c.want)
		}
	}
}
