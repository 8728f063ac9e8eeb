package cluster_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"wkd/node"
)

// TestWrongGossipKey starts a node whose gossip key differs from the cluster's: it never
// enters a view, and it exits with an error that names the key and the join.
func TestWrongGossipKey(t *testing.T) {
	const total = 60
	c := newCluster(t)
	ps, addrs := c.startNodes(2, 2, total, long...)
	for _, p := range ps {
		p.waitLine(t, 0, 30*time.Second, "a view of 2", isView(2))
	}
	other, err := node.NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	intruder := c.start(nodeSpec{name: "intruder", addr: freeAddrs(t, 1)[0], seeds: addrs, minNodes: 1, steps: total,
		extra: []string{"--join-timeout", "3s"}, env: []string{node.GossipKeyEnv + "=" + other}})
	err = intruder.wait(t, 30*time.Second)
	if err == nil {
		t.Fatalf("the node with another gossip key exited cleanly:\n%s", intruder.tail(20))
	}
	out := intruder.tail(5)
	if !strings.Contains(out, "gossip key") || !strings.Contains(out, "join") {
		t.Errorf("the intruder's error does not name the gossip key and the join:\n%s", out)
	}
	t.Logf("intruder: %v: %s", err, strings.TrimSpace(intruder.tail(1)))
	if has(intruder.snapshot(), `"message":"view agreed"`) {
		t.Error("the intruder agreed a view")
	}
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, l := range p.snapshot() {
			if slices.Contains(l.strs("members"), "intruder") {
				t.Errorf("%s saw the intruder in a view: %s", p.name, l.Raw)
			}
		}
	}
}

// TestNATSNeedsCredentials: the server refuses a client without a token or with a wrong one,
// and a node with a wrong token exits with an error that says so.
func TestNATSNeedsCredentials(t *testing.T) {
	c := newExternalCluster(t)
	for name, opts := range map[string][]nats.Option{
		"no token":    nil,
		"wrong token": {nats.Token("not-" + c.token)},
	} {
		nc, err := nats.Connect(c.natsURL, append(opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: the NATS server accepted the client", name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: refused with %v, want an authorization error", name, err)
		}
	}
	nc, err := node.Connect(c.natsURL, node.Creds{Token: c.token})
	if err != nil {
		t.Fatalf("the right token was refused: %v", err)
	}
	nc.Close()

	env := append(os.Environ(), node.NATSTokenEnv+"=wrong", node.GossipKeyEnv+"="+c.key)
	p := startProc(t, "bad-token", t.TempDir(), env, "node", "--job", "distill", "--name", "bad-token",
		"--bind", freeAddrs(t, 1)[0], "--nats", c.natsURL, "--model", "cyclegan", "--data", dataDir, "--teacher", teacherDir)
	if err := p.wait(t, 30*time.Second); err == nil {
		t.Fatal("a node with a wrong NATS token exited cleanly")
	}
	if out := p.tail(5); !strings.Contains(strings.ToLower(out), "authorization") || !strings.Contains(out, "token") {
		t.Errorf("the node's error does not say the token was refused:\n%s", out)
	}
}

// TestTLSCluster runs two nodes whose NATS servers speak mutual TLS with certificates of
// `wkd certs`: they train to the end; a NATS client without a certificate, or with one of
// another CA, is refused by a node's server, and a node with a certificate of another CA
// never takes a rank (its routes are refused) and exits saying why.
func TestTLSCluster(t *testing.T) {
	const total = 200
	c := newCluster(t)
	good, evil := filepath.Join(c.dir, "certs"), filepath.Join(c.dir, "evil-certs")
	runCmd(t, 30*time.Second, os.Environ(), "certs", "--out", good, "--nodes", "node-0,node-1")
	runCmd(t, 30*time.Second, os.Environ(), "certs", "--out", evil, "--nodes", "evil")
	tlsArgs := func(dir, name string) []string {
		f := node.CertFiles(dir, name)
		return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
	}
	env := append(os.Environ(), node.NATSTokenEnv+"="+c.token, node.GossipKeyEnv+"="+c.key)
	addrs := freeAddrs(t, 3)
	start := func(name, addr, certDir string, extra ...string) *proc {
		args := []string{"node", "--job", "distill", "--name", name, "--bind", addr, "--seeds", strings.Join(addrs[:2], ","),
			"--min-nodes", "2", "--nats-listen", "127.0.0.1:0", "--nats-cluster", "127.0.0.1:0"}
		args = append(append(append(args, jobArgs(filepath.Join(c.dir, name), total)...), long...), tlsArgs(certDir, name)...)
		p := startProc(t, name, filepath.Join(c.dir, name), env, append(args, extra...)...)
		c.mu.Lock()
		c.procs = append(c.procs, p)
		c.mu.Unlock()
		return p
	}
	ps := []*proc{start("node-0", addrs[0], good), start("node-1", addrs[1], good)}
	for _, p := range ps {
		p.waitLine(t, 0, 30*time.Second, "a view of 2", isView(2))
	}
	// While the two train, a node with a certificate of another CA tries to join them.
	intruder := start("evil", addrs[2], evil, "--join-timeout", "4s")
	l, _ := ps[0].waitLine(t, 0, 5*time.Second, "its NATS server's URL", func(l line) bool { return l.Msg == "NATS server of this node" })
	url := l.str("url")
	if l.F["tls"] != true {
		t.Errorf("node-0 says its NATS server runs without TLS: %s", l.Raw)
	}
	connect := func(opts ...nats.Option) error {
		nc, err := nats.Connect(url, append(opts, nats.Token(c.token), nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(); err == nil {
		t.Error("a client with the token and no certificate connected to a node's NATS server")
	}
	for name, files := range map[string]node.TLSFiles{"another CA's": node.CertFiles(evil, "client"), "the cluster's": node.CertFiles(good, "client")} {
		cfg, err := files.Config()
		if err != nil {
			t.Fatal(err)
		}
		err = connect(nats.Secure(cfg))
		if ok := name == "the cluster's"; (err == nil) != ok {
			t.Errorf("a client with %s certificate: connect error %v (want refused: %v)", name, err, !ok)
		}
	}

	if err := intruder.wait(t, 30*time.Second); err == nil {
		t.Fatalf("the node with another CA's certificate exited cleanly:\n%s", intruder.tail(20))
	}
	if out := intruder.tail(5); !strings.Contains(out, "no NATS route") || !strings.Contains(out, "TLS") {
		t.Errorf("the intruder's error does not say its routes were refused:\n%s", out)
	}
	if ps[0].exited() {
		t.Error("node-0 finished before the intruder gave up: the test proves nothing about joining")
	}
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, l := range p.snapshot() {
			if slices.Contains(l.strs("members"), "evil") {
				t.Errorf("%s saw the intruder in a view: %s", p.name, l.Raw)
			}
		}
	}
	checkRun(t, total, ps)
}

// TestLogsFromAnyNode reads the whole cluster's log lines with `wkd logs` from one node's own
// NATS server: the other node's lines reach it over the routes.
func TestLogsFromAnyNode(t *testing.T) {
	const total = 150
	c := newCluster(t)
	ps, _ := c.startNodes(2, 2, total, long...)
	l, _ := ps[1].waitLine(t, 0, 30*time.Second, "its NATS server's URL", func(l line) bool { return l.Msg == "NATS server of this node" })
	out := filepath.Join(c.dir, "merged.log")
	env := append(os.Environ(), node.NATSTokenEnv+"="+c.token)
	logs := startProc(t, "logs", c.dir, env, "logs", "--nats", l.str("url"), "--out", out, "--duration", "60s")
	c.mu.Lock()
	c.procs = append(c.procs, logs)
	c.mu.Unlock()
	logs.waitLine(t, 0, 10*time.Second, "collecting", func(l line) bool { return strings.Contains(l.Raw, "collecting") })
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	logs.signal(syscall.SIGINT)
	logs.wait(t, 10*time.Second)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-0", "node-1"} {
		if n := strings.Count(string(b), `"node":"`+name+`"`); n < 10 {
			t.Errorf("%d lines of %s in the log read from node-1's server, want its steps", n, name)
		}
	}
}
