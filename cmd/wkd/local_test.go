package main

import (
	"io"
	"path/filepath"
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

// TestLocalNodeCommandLine: a local cluster's node gets a command line that wkd node parses,
// with the node's own name and the run folder, whatever spellings the user's flags took.
func TestLocalNodeCommandLine(t *testing.T) {
	args := []string{"--model", "cyclegan", "--local-nodes=2", "--name", "exp", "--checkpoints_dir", "ck", "--batch_size", "4",
		"-max-steps", "3", "--beta1", "-0.25"}
	argv := localNodeArgs("distill", args, filepath.Join("ck", "exp"), 1, []string{"127.0.0.1:1", "127.0.0.1:2"}, "nats://127.0.0.1:3")
	root := newRoot(argv, io.Discard, io.Discard)
	cmd, rest, err := root.Find(longDashes(root, argv))
	if err != nil || cmd.Name() != "node" {
		t.Fatalf("%v: %v, %v", argv, cmd, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("wkd %s: %v", strings.Join(argv, " "), err)
	}
	for name, want := range map[string]string{"job": "distill", "name": "node-1", "out": filepath.Join("ck", "exp"), "model": "cyclegan",
		"batch-size": "4", "max-steps": "3", "beta1": "-0.25", "bind": "127.0.0.1:2", "min-nodes": "2", "nats": "nats://127.0.0.1:3"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("the node's --%s is %q, want %q (command line %v)", name, got, want, argv)
		}
	}
	if cmd.Flags().NArg() != 0 {
		t.Errorf("stray arguments %v", cmd.Flags().Args())
	}
}
