// Command gpuexec runs a `-tags cuda` test binary for `go test -exec` and turns one specific
// failure into a skip: gorgonia.org/cu calls cuInit in its package init and exits with status 1
// and "Error in initialization ... <reason>" when no GPU answers, before any test (or t.Skip)
// can run. Every other outcome, failures included, passes through unchanged.
//
//	go build -o "$tmp/gpuexec" ./ops/cuda/gpuexec
//	go test -tags cuda -exec "$tmp/gpuexec" ./ops/cuda/...
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
)

// cuInitFailure is cu v0.9.6's message (cu.go, init) followed by the driver's reason.
var cuInitFailure = regexp.MustCompile(`(?m)^Error in initialization, please refer to "[^"]*" for details on: (\S+)`)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes args and returns the exit status to report.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "gpuexec: usage: gpuexec TEST-BINARY [ARGS...] (for go test -exec)")
		return 2
	}
	var out bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = io.MultiWriter(stdout, &out)
	cmd.Stderr = io.MultiWriter(stderr, &out)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case !errors.As(err, &exit):
		fmt.Fprintf(stderr, "gpuexec: %v\n", err)
		return 2
	}
	if m := cuInitFailure.FindSubmatch(out.Bytes()); m != nil && exit.ExitCode() == 1 &&
		!bytes.Contains(out.Bytes(), []byte("=== RUN")) {
		fmt.Fprintf(stdout, "--- SKIP: every test: no GPU answered: cuInit: %s\nPASS\n", m[1])
		return 0
	}
	return exit.ExitCode()
}
