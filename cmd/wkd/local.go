package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"

	"wkd/node"
	"wkd/trainer"
)

func init() {
	register(command{name: "keygen", summary: "print a new random gossip key (base64) for a cluster", group: groupCluster,
		flags: func(*pflag.FlagSet, []string) func([]string) error {
			return func([]string) error {
				k, err := node.NewGossipKey()
				if err != nil {
					return err
				}
				fmt.Println(k)
				return nil
			}
		}})
}

// runLocalCluster runs a job data-parallel on n node processes on this machine: an embedded
// NATS server on loopback with a fresh token, a fresh gossip key, and `wkd node` children that
// find each other on loopback ports. It returns when every node has finished.
func runLocalCluster(job string, args []string, n int, cfg trainer.Config) error {
	if cfg.BatchSize < n {
		return fmt.Errorf("--batch-size %d is the global batch: give at least one sample to each of the %d --local-nodes", cfg.BatchSize, n)
	}
	tokenBytes := make([]byte, 16)
	rand.Read(tokenBytes)
	token := hex.EncodeToString(tokenBytes)
	srv, err := node.StartNATS(node.NATSConfig{Host: "127.0.0.1", Port: 0, Token: token, MaxPayload: node.DefaultMaxPayload})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	key, err := node.NewGossipKey()
	if err != nil {
		return err
	}
	ports, err := freePorts(n)
	if err != nil {
		return err
	}
	var seeds []string
	for _, p := range ports {
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", p))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "local cluster: NATS at %s, %d nodes on %s\n", srv.ClientURL(), n, strings.Join(seeds, ","))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, n)
	cmds := make([]*exec.Cmd, n)
	for i := range n {
		cmd := exec.CommandContext(ctx, exe, localNodeArgs(job, args, cfg.Dir, i, seeds, srv.ClientURL())...)
		cmd.Env = append(os.Environ(), "WKD_NATS_TOKEN="+token, "WKD_GOSSIP_KEY="+key)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds[i] = cmd
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("node-%d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s on %d local nodes done; weights in %s\n", job, n, cfg.Dir)
	return nil
}

// dropFlag removes --name=value, and --name with the argument after it when the flag takes a
// value (a boolean flag stands alone), from args.
func dropFlag(args []string, name string, takesValue bool) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--"+name || a == "-"+name {
			if takesValue {
				i++ // "--name value"; a boolean flag stands alone
			}
			continue
		}
		if strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// localNodeArgs is the command line of node i of a local cluster running job with the flags
// args: those of train or distill but --local-nodes, and the run folder as --out (a node's
// --name is the node's, so the reference's run name becomes the folder itself).
func localNodeArgs(job string, args []string, dir string, i int, seeds []string, natsURL string) []string {
	rest := dropFlag(args, "local-nodes", true)
	rest = dropFlag(dropFlag(rest, "name", true), "checkpoints_dir", true)
	return append(append([]string{"node", "--job", job, "--name", fmt.Sprintf("node-%d", i), "--bind", seeds[i],
		"--seeds", strings.Join(seeds, ","), "--nats", natsURL, "--min-nodes", fmt.Sprint(len(seeds)), "--quiet"}, rest...),
		"--out", dir)
}

// freePorts finds n ports free for both TCP and UDP on loopback (memberlist uses both).
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		held = append(held, l)
		ports = append(ports, p)
	}
	return ports, nil
}
