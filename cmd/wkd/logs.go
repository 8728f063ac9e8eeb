package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"wkd/node"
)

func init() {
	register(command{name: "logs", summary: "merge every node's log lines from NATS into one stream and file", group: groupCluster, flags: logsFlags})
}

func logsFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	url := fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of the cluster")
	token := fs.String("nats-token", "", "NATS token; prefer --nats-token-file or "+node.NATSTokenEnv+" (flags show in ps)")
	tokenFile := fs.String("nats-token-file", "", "file whose first line is the NATS token")
	user := fs.String("user", "", "NATS user name (with --password), instead of a token")
	password := fs.String("password", "", "NATS password (with --user)")
	nkeySeed := fs.String("nkey-seed", "", "file holding a NATS user nkey seed, instead of a token")
	out := fs.String("out", filepath.Join("logs", "wkd.log"), "file the merged lines are appended to")
	follow := fs.Bool("follow", true, "keep collecting until SIGINT/SIGTERM (false needs --duration)")
	duration := fs.Duration("duration", 0, "stop after this long (e.g. 30s); 0: no limit")
	var tf tlsFlags
	bindTLSFlags(fs, &tf)
	renamed(fs, "token", "nats-token")
	renamed(fs, "token-file", "nats-token-file")
	return func(args []string) error {
		if *duration < 0 {
			return fmt.Errorf("--duration %v is negative", *duration)
		}
		if !*follow && *duration == 0 {
			return fmt.Errorf("--follow=false needs --duration: NATS keeps no history to read and stop")
		}
		tok, err := node.LoadToken(*token, *tokenFile)
		if err != nil {
			return fmt.Errorf("--nats-token-file: %w", err)
		}
		creds := node.Creds{Token: tok, User: *user, Password: *password, NKeySeedFile: *nkeySeed}
		if creds.TLS, err = tf.config(); err != nil {
			return err
		}
		if err := tf.requirePlaintextOK("--nats", *url); err != nil {
			return err
		}
		if tok == "" && *user == "" && *nkeySeed == "" {
			return fmt.Errorf("no NATS credentials: give --nats-token-file, %s, --nats-token, --user/--password or --nkey-seed", node.NATSTokenEnv)
		}

		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return fmt.Errorf("--out %s: %w", *out, err)
		}
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--out %s: %w", *out, err)
		}
		defer f.Close()

		nc, err := node.Connect(*url, creds, nats.Name("wkd logs"),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				fmt.Fprintf(os.Stderr, "wkd logs: disconnected from %s (%v); reconnecting\n", *url, err)
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				fmt.Fprintf(os.Stderr, "wkd logs: reconnected to %s\n", c.ConnectedUrl())
			}))
		if err != nil {
			return fmt.Errorf("--nats %s: %w", *url, err)
		}
		defer nc.Close()

		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if *duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *duration)
			defer cancel()
		}
		fmt.Fprintf(os.Stderr, "wkd logs: collecting %s> from %s into %s\n", node.LogSubjectPrefix, *url, *out)
		start := time.Now()
		counts, err := node.CollectLogs(ctx, nc, io.MultiWriter(os.Stdout, f))
		logsPrintCounts(os.Stderr, counts, time.Since(start))
		if err != nil {
			return err
		}
		return f.Sync()
	}
}

// logsPrintCounts prints how many lines came from each node, by node name.
func logsPrintCounts(w io.Writer, counts map[string]int, took time.Duration) {
	names := make([]string, 0, len(counts))
	total := 0
	for n, c := range counts {
		names = append(names, n)
		total += c
	}
	sort.Strings(names)
	fmt.Fprintf(w, "wkd logs: %d lines from %d nodes in %.1fs\n", total, len(names), took.Seconds())
	for _, n := range names {
		fmt.Fprintf(w, "  %-20s %d\n", n, counts[n])
	}
}
