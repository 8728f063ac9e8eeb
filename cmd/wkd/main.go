// Command wkd trains, distills, evaluates and serves image-to-image GANs compressed by
// wavelet knowledge distillation, on one machine or a cluster.
package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	// The CUDA backend of --device cuda registers itself here in builds with -tags cuda; in
	// the default build the package is empty and the flag explains how to get it.
	_ "wkd/ops/cuda"
)

// command is one subcommand of wkd. Each lives in its own file and registers itself in init.
type command struct {
	name    string
	summary string
	group   string // one of the groups below
	// use is what follows the name in the usage line (default "[flags]"); long is the help
	// text above the flags (default: the summary).
	use, long string
	// args checks the positional arguments (default: none allowed).
	args cobra.PositionalArgs
	// flags binds the command's flags onto fs and returns what runs once they are parsed.
	// argv is the whole command line, for flags whose set or defaults depend on another
	// flag (--model, --job).
	flags func(fs *pflag.FlagSet, argv []string) func(args []string) error
	// help, if set, is printed after the flags in the command's help.
	help func(w io.Writer, fs *pflag.FlagSet)
}

const (
	groupMake    = "make"
	groupEval    = "eval"
	groupCluster = "cluster"
	groupBench   = "bench"
)

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("wkd: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// usageError is a command line wkd cannot run as written: an unknown command or flag, a bad
// flag value or argument count. It exits with status 2 and a hint, as usage errors do.
type usageError struct {
	cmd string // "wkd train"
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// newRoot builds the command tree for one command line; flags are bound afresh, so it can
// run several times in one process.
func newRoot(argv []string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "wkd",
		Short: "wavelet knowledge distillation for image-to-image GANs",
		Long: "wkd: wavelet knowledge distillation for image-to-image GANs\n\n" +
			"A big pix2pix or CycleGAN teacher teaches a student a fraction of its size the\n" +
			"high-frequency bands of its output's Haar wavelet transform; on one machine or a cluster.",
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE:          func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("wkd {{.Version}}\n")
	root.AddGroup(
		&cobra.Group{ID: groupMake, Title: "Make a small generator:"},
		&cobra.Group{ID: groupEval, Title: "Evaluate:"},
		&cobra.Group{ID: groupCluster, Title: "Cluster:"},
		&cobra.Group{ID: groupBench, Title: "Benchmarks (wkd against PyTorch or raw NATS, same run):"},
	)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: withFlagHint(c.Flags(), err)}
	})
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		root.AddCommand(commands[n].cobra(argv))
	}
	root.AddCommand(&cobra.Command{Use: "version", Short: "print wkd's version", Args: cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) { fmt.Fprintln(c.OutOrStdout(), "wkd", version()) }})
	return root
}

// cobra makes the cobra command of c, its flags bound.
func (c command) cobra(argv []string) *cobra.Command {
	use := c.use
	if use == "" {
		use = "[flags]"
	}
	long := c.long
	if long == "" {
		long = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
	}
	cc := &cobra.Command{Use: c.name + " " + use, Short: c.summary, Long: long, GroupID: c.group}
	path := "wkd " + c.name
	check := c.args
	if check == nil {
		check = noArgs
	}
	cc.Args = func(_ *cobra.Command, args []string) error {
		if err := check(cc, args); err != nil {
			return &usageError{cmd: path, err: err}
		}
		return nil
	}
	cc.Flags().SortFlags = false
	run := c.flags(cc.Flags(), argv)
	cc.RunE = func(_ *cobra.Command, args []string) error {
		if err := run(args); err != nil {
			return &commandError{cmd: c.name, err: err}
		}
		return nil
	}
	if c.help != nil {
		cc.SetHelpFunc(func(cmd *cobra.Command, args []string) {
			cmd.Parent().HelpFunc()(cmd, args)
			c.help(cmd.OutOrStdout(), cmd.Flags())
		})
	}
	return cc
}

// noArgs refuses positional arguments: the command takes flags only.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q: this command takes flags only, and flags start with --", args[0])
	}
	return nil
}

// withFlagHint adds to an unknown-flag error the closest flag of fs, if one is close.
func withFlagHint(fs *pflag.FlagSet, err error) error {
	var missing *pflag.NotExistError
	if !errors.As(err, &missing) || missing.GetSpecifiedName() == "" {
		return err
	}
	name := missing.GetSpecifiedName()
	var flags []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			flags = append(flags, f.Name)
		}
	})
	best := closest(name, flags)
	if best == "" && len(name) >= 3 {
		for _, f := range flags { // a flag written short: --crop for --crop-size
			if strings.HasPrefix(f, name) && (best == "" || len(f) < len(best)) {
				best = f
			}
		}
	}
	if best == "" {
		return err
	}
	return fmt.Errorf("%w (did you mean --%s?)", err, best)
}

// builtins are the commands cobra adds (and its hidden completion helpers) and version.
var builtins = []string{"help", "completion", "version", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd}

// execute runs one wkd command line (the arguments after the program name).
func execute(argv []string, stdout, stderr io.Writer) error {
	// The command, or the topic of wkd help, must exist (cobra's help shows the top help for
	// any unknown topic).
	topic := 0
	if len(argv) > 1 && argv[0] == "help" {
		topic = 1
	}
	if len(argv) > topic && !strings.HasPrefix(argv[topic], "-") {
		if _, ok := commands[argv[topic]]; !ok && !slices.Contains(builtins, argv[topic]) {
			names := slices.Collect(maps.Keys(commands))
			err := fmt.Errorf("unknown command %q", argv[topic])
			if best := closest(argv[topic], names); best != "" {
				err = fmt.Errorf("unknown command %q (did you mean %q?)", argv[topic], best)
			}
			return &usageError{cmd: "wkd", err: err}
		}
	}
	root := newRoot(argv, stdout, stderr)
	root.SetArgs(longDashes(root, argv))
	_, err := root.ExecuteC()
	return err
}

// wkd runs a command line in this process with the standard streams, as the binary would.
func wkd(argv ...string) error { return execute(argv, os.Stdout, os.Stderr) }

// longDashes accepts Go's single-dash spelling of long flags (-max-steps 5, -G G_A), which
// earlier releases took: -name becomes --name, unless it is the value of the flag before it
// (--beta1 -0.5) or a shorthand (-h, -v). A misspelled -name thus gets the hint of --name.
func longDashes(root *cobra.Command, argv []string) []string {
	cmd, _, err := root.Find(argv)
	if err != nil {
		return argv
	}
	fs := cmd.Flags()
	takesValue := func(arg string) bool { // arg is a flag whose value is the next argument
		name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		f := fs.Lookup(name)
		if len(name) == 1 && f == nil {
			f = fs.ShorthandLookup(name)
		}
		return f != nil && !hasValue && f.NoOptDefVal == ""
	}
	out := slices.Clone(argv)
	for i, a := range out {
		if a == "--" {
			break
		}
		if i > 0 && strings.HasPrefix(out[i-1], "-") && takesValue(out[i-1]) {
			continue
		}
		if len(a) < 2 || a[0] != '-' || a[1] == '-' || !isLetter(a[1]) {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) == 1 && (fs.Lookup(name) == nil || fs.ShorthandLookup(name) != nil) {
			continue // -h, and unknown one-letter flags stay pflag's to report
		}
		out[i] = "-" + a
	}
	return out
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func main() {
	err := execute(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode turns a command's error into an exit status: 0 for success, 1 with the error on
// stderr for a command that failed, 2 for a usage error, with a hint to the help. Errors
// that are not a command's come from parsing the command line (cobra's own commands
// included), so they are usage errors too.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var c *commandError
	if errors.As(err, &c) {
		fmt.Fprintf(stderr, "wkd %s: %v\n", c.cmd, c.err)
		return 1
	}
	u := &usageError{cmd: "wkd", err: err}
	errors.As(err, &u)
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", u.cmd, u.err, u.cmd)
	return 2
}

// commandError is an error of a command's run, which names the command in its message.
type commandError struct {
	cmd string
	err error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

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

// closest is the name nearest to a mistyped one, if any is within two edits (one for names of
// up to three letters, where two edits would make anything a match).
func closest(name string, names []string) string {
	best, bestD := "", 3
	if len(name) <= 3 {
		bestD = 2
	}
	for _, n := range names {
		if d := editDistance(name, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
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
