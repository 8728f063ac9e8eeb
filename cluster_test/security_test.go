package cluster_test

import (
	"errors"
	"os"
	"slices"
	"strings"
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
	c := newCluster(t)
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
