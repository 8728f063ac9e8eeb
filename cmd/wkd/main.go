// Command wkd trains, distills, evaluates and serves image-to-image GANs compressed by
// wavelet knowledge distillation, on one machine or a cluster.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
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

func usage() {
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
	b.WriteString("\nRun 'wkd <command> -h' for the flags of a command.\n")
	fmt.Fprint(os.Stderr, b.String())
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "wkd: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(exitCode(c, os.Args[2:]))
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
