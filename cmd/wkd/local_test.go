package main

import (
	"strings"
	"testing"
)

// TestDropFlag: a boolean flag is dropped alone, a flag with a value with its value.
func TestDropFlag(t *testing.T) {
	args := []string{"--overwrite", "--max-steps", "2", "--local-nodes", "2", "--use-teacher-d", "--local-nodes=3", "-overwrite=true"}
	got := dropFlag(dropFlag(args, "overwrite", false), "local-nodes", true)
	if want := "--max-steps 2 --use-teacher-d"; strings.Join(got, " ") != want {
		t.Errorf("dropFlag: %q, want %q", strings.Join(got, " "), want)
	}
}
