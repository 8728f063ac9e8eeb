// Command wkd trains, distills, evaluates and serves image-to-image GANs compressed by
// wavelet knowledge distillation, on one machine or a cluster.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	// The CUDA backend of --device cuda registers itself here in builds with -tags cuda; in
	// the default build the package is empty and the flag explains how to get it.
	_ "wkd/ops/cuda"
)

// command is one subcommand of wkd. Each lives in its own file and registers itself in init.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("wkd: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func usage(w io.Writer) {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("wkd: wavelet knowledge distillation for image-to-image GANs\n\nUsage: wkd <command> [flags]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-16s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'wkd help <command>' or 'wkd <command> -h' for the flags of a command; 'wkd --version' for the version.\n")
	fmt.Fprint(w, b.String())
}

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 0:
		usage(os.Stderr)
		os.Exit(2)
	case args[0] == "--version" || args[0] == "-version" || args[0] == "version":
		fmt.Println("wkd", version())
		return
	case args[0] == "help" && len(args) > 1:
		args = []string{args[1], "-h"} // wkd help CMD is wkd CMD -h
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		usage(os.Stdout)
		return
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "wkd: unknown command %q%s\n\n", args[0], didYouMean(args[0]))
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(exitCode(c, args[1:]))
}

// version is the module version the binary was built from, or its VCS revision.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+modified"
		}
	}
	return v
}

// didYouMean names the command closest to a mistyped one, if any is close.
func didYouMean(name string) string {
	best, bestD := "", 3
	for n := range commands {
		if d := editDistance(name, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// exitCode runs c and turns its error into an exit status: 0 for success and for -h (the flag
// set already printed the usage), 1 with the error on stderr otherwise.
func exitCode(c command, args []string) int {
	err := c.run(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "wkd %s: %v\n", c.name, err)
	return 1
}
