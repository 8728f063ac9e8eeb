package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/data"
)

// A flag that belongs to other datasets, or a bad value, is refused with the flag's name before
// anything is downloaded or written.
func TestDataFlagsNameTheFlag(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no apt-get: nothing can be fetched
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "bricks"}, "--name"},
		{[]string{}, "--name is required"},
		{[]string{"--name", data.Sketch2Texture, "--channels", "1"}, "--channels"},
		{[]string{"--name", data.Stone2Metal, "--source", dir}, "--source"},
		{[]string{"--name", data.Stone2Metal, "--edge-sigma", "2"}, "--edge-sigma"},
		{[]string{"--name", data.TextureClasses, "--edge-high", "0.2"}, "--edge-high"},
		{[]string{"--name", data.Edges2ShoesMini, "--seed", "3"}, "--seed"},
		{[]string{"--name", data.Sneaker2Boot, "--textures", "x.deb"}, "--textures"},
		{[]string{"--name", data.Sneaker2Boot, "--cache", dir}, "--cache"},
		{[]string{"--name", data.Sketch2Texture, "--size", "16", "--cache", dir}, "--size 16, want 32..512"},
		{[]string{"--name", data.Sketch2Texture, "--train", "0", "--cache", dir}, "--train"},
	} {
		err := runData(append(c.args, "--out", out, "--quiet"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("wkd data %s: %v, want an error naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused commands left %v", entries)
	}
}

// Without the package in --cache and without apt-get, the error says what to run and which flag
// takes a .deb fetched elsewhere.
func TestDataWithoutTexturePackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := runData([]string{"--name", data.Stone2Metal, "--cache", t.TempDir(), "--out", t.TempDir(), "--quiet"})
	for _, want := range []string{data.TexturePackage, "apt-get download", "--textures"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
}

// TestDataProgressOffATerminal: into a file or pipe, progress is whole lines, one per tenth of
// each split, with no carriage returns to garble a log.
func TestDataProgressOffATerminal(t *testing.T) {
	var b strings.Builder
	p := dataProgressPrinter(&b, false)
	for _, split := range []string{"train", "test"} {
		for i := 1; i <= 50; i++ {
			p(split, i, 50)
		}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if strings.ContainsAny(b.String(), "\r\033") || len(lines) != 20 || !strings.Contains(lines[9], "train        50/50     100%") ||
		!strings.HasPrefix(lines[10], "test ") {
		t.Errorf("progress off a terminal:\n%q", b.String())
	}
	b.Reset()
	p = dataProgressPrinter(&b, true)
	p("train", 50, 50)
	if b.String() != "\rtrain        50/50     100%\033[K\n" {
		t.Errorf("progress on a terminal: %q", b.String())
	}
}
