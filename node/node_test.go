package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	s, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseGossipKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testLogger(t *testing.T, name string) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).With().Str("node", name).Logger()
	}
	return zerolog.Nop()
}

func startNode(t *testing.T, name string, key []byte, seeds ...string) *Node {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.Name = name
	cfg.GossipKey = key
	cfg.NATSURL = "nats://127.0.0.1:1/" + name
	n, err := New(cfg, testLogger(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	if err := n.Join(seeds); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitView reads views from each node until all hold the same generation with want members.
func waitView(t *testing.T, within time.Duration, want int, nodes ...*Node) View {
	t.Helper()
	deadline := time.After(within)
	last := make([]View, len(nodes))
	for {
		ok := true
		for i, n := range nodes {
			v, cur := n.View()
			last[i] = v
			if !cur || v.Size() != want || v.Generation != last[0].Generation {
				ok = false
			}
		}
		if ok {
			return last[0]
		}
		select {
		case <-deadline:
			for i, n := range nodes {
				t.Logf("%s: %v %v", n.cfg.Name, n.Status(), last[i])
			}
			t.Fatalf("no common view of %d members within %v", want, within)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestNodeViewsInProcess(t *testing.T) {
	key := testKey(t)
	a := startNode(t, "a", key)
	metrics := NewMetrics("a", nil)
	a.SetMetrics(metrics)
	b := startNode(t, "b", key, a.Addr())
	c := startNode(t, "c", key, a.Addr())
	v := waitView(t, 5*time.Second, 3, a, b, c)
	if g := testutilGauge(t, metrics, "wkd_view_members"); g != 3 {
		t.Fatalf("wkd_view_members %v after a 3-member view", g)
	}
	if got := fmt.Sprint(v.Names()); got != "[a b c]" {
		t.Fatalf("members %s", got)
	}
	for i, n := range []*Node{a, b, c} {
		nv, _ := n.View()
		if nv.Rank() != i || nv.Members[i].NATSURL != "nats://127.0.0.1:1/"+n.cfg.Name || nv.Members[i].Addr == "" {
			t.Fatalf("%s: %+v", n.cfg.Name, nv)
		}
	}
	select {
	case cv := <-c.Views():
		if cv.Generation != v.Generation {
			t.Fatalf("Views() gave %v, View() %v", cv, v)
		}
	case <-time.After(time.Second):
		t.Fatal("nothing on Views()")
	}

	// A graceful leave: the others agree a 2-member view.
	start := time.Now()
	if err := c.Leave(); err != nil {
		t.Fatal(err)
	}
	v2 := waitView(t, 3*time.Second, 2, a, b)
	t.Logf("leave -> new view in %v", time.Since(start))
	if v2.Generation <= v.Generation {
		t.Fatalf("generation %d after %d", v2.Generation, v.Generation)
	}
	if ph := c.Status().Phase; ph != PhaseOut {
		t.Fatalf("leaver in phase %v", ph)
	}
	c.Shutdown()
	if _, ok := <-c.Views(); ok {
		// drain the one buffered view, then the channel must be closed
		if _, ok := <-c.Views(); ok {
			t.Fatal("Views() not closed after Shutdown")
		}
	}

	// A crash (Shutdown without Leave) of b: a alone (MinNodes 1) agrees a view of 1.
	start = time.Now()
	b.Shutdown()
	waitView(t, 3*time.Second, 1, a)
	t.Logf("crash -> new view in %v", time.Since(start))
}

func TestNodeWrongKeyCannotJoin(t *testing.T) {
	a := startNode(t, "a", testKey(t))
	cfg := DefaultLocalConfig()
	cfg.Name = "intruder"
	cfg.GossipKey = testKey(t)
	x, err := New(cfg, testLogger(t, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown()
	err = x.Join([]string{a.Addr()})
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("join with another key: %v, want ErrJoin", err)
	}
	time.Sleep(300 * time.Millisecond) // let any stray gossip land
	if ms := a.Members(); len(ms) != 1 {
		t.Fatalf("a sees %v", ms)
	}
}

func TestNodeMinNodesWaits(t *testing.T) {
	key := testKey(t)
	mk := func(name string, seeds ...string) *Node {
		cfg := DefaultLocalConfig()
		cfg.Name, cfg.GossipKey, cfg.MinNodes = name, key, 2
		cfg.Seeds = seeds // through the config this time: Join(nil) uses them
		n, err := New(cfg, testLogger(t, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		if err := n.Join(nil); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := mk("a")
	deadline := time.Now().Add(2 * time.Second)
	for a.Status().Phase != PhaseWaiting && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := a.Status(); st.Phase != PhaseWaiting || st.String() != "waiting: 1 of 2 nodes needed are ready" {
		t.Fatalf("alone with MinNodes 2: %v", st)
	}
	b := mk("b", a.Addr())
	waitView(t, 3*time.Second, 2, a, b)
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{DefaultLocalConfig(), DefaultClusterConfig()} {
		c.Name = "n1"
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	bad := []func(*Config){
		func(c *Config) { c.Name = "" },
		func(c *Config) { c.Name = "a.b" },
		func(c *Config) { c.ProbeTimeout = c.ProbeInterval },
		func(c *Config) { c.MinNodes = 0 },
		func(c *Config) { c.MaxNodes = 1; c.MinNodes = 2 },
		func(c *Config) { c.BindPort = 70000 },
		func(c *Config) { c.GossipKey = []byte("short") },
	}
	for i, f := range bad {
		c := DefaultLocalConfig()
		c.Name = "n1"
		f(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) && !errors.Is(err, ErrBadKey) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestGossipKeySources(t *testing.T) {
	t.Setenv(GossipKeyEnv, "")
	if _, err := LoadGossipKey(""); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	cfg := DefaultLocalConfig()
	cfg.Name = "n"
	if _, err := New(cfg, zerolog.Nop()); !errors.Is(err, ErrNoKey) {
		t.Fatalf("New without key: %v", err)
	}
	s, _ := NewGossipKey()
	t.Setenv(GossipKeyEnv, s)
	if k, err := LoadGossipKey(""); err != nil || len(k) != 32 {
		t.Fatalf("env key: %v %d", err, len(k))
	}
	f := filepath.Join(t.TempDir(), "key")
	os.WriteFile(f, []byte("  "+s[:20]+"\n"+s[20:]+"\n"), 0o600)
	if k, err := LoadGossipKey(f); err != nil || len(k) != 32 {
		t.Fatalf("file key: %v %d", err, len(k))
	}
	os.WriteFile(f, []byte("AAAA"), 0o600)
	if _, err := LoadGossipKey(f); !errors.Is(err, ErrBadKey) {
		t.Fatalf("3-byte key: %v", err)
	}
	t.Setenv(GossipKeyEnv, "not base64!")
	if _, err := LoadGossipKey(""); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad env key: %v", err)
	}
}

// testutilGauge reads one gauge of m by name.
func testutilGauge(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Nodes come and go under new names (as hostname-pid names do across restarts): the senders a
// node started for departed peers stop, so their number follows the membership, not its
// history.
func TestSendersFollowMembership(t *testing.T) {
	key := testKey(t)
	a := startNode(t, "a", key)
	for i := range 6 {
		p := startNode(t, fmt.Sprintf("p%d", i), key, a.Addr())
		waitView(t, 5*time.Second, 2, a, p)
		if n := a.senders(); n < 1 {
			t.Fatalf("round %d: a has %d senders with a peer in its view", i, n)
		}
		if err := p.Leave(); err != nil {
			t.Fatal(err)
		}
		p.Shutdown()
		waitView(t, 5*time.Second, 1, a)
	}
	if !a.WaitChange(timeoutCtx(t, 5*time.Second), func() bool { return a.senders() == 0 }) {
		t.Fatalf("a runs %d senders after 6 peers came and left, want 0", a.senders())
	}
}

// WaitChange returns at once when the condition holds, wakes on a view change, and gives up
// when its context ends.
func TestWaitChange(t *testing.T) {
	key := testKey(t)
	a := startNode(t, "a", key)
	waitView(t, 5*time.Second, 1, a)
	if !a.WaitChange(timeoutCtx(t, time.Second), func() bool { return true }) {
		t.Fatal("WaitChange(true) = false")
	}
	start := time.Now()
	if a.WaitChange(timeoutCtx(t, 100*time.Millisecond), func() bool { return false }) {
		t.Fatal("WaitChange(false) = true")
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("WaitChange(false) returned after %v, before its context ended", d)
	}
	v, _ := a.View()
	done := make(chan bool)
	go func() {
		done <- a.WaitChange(timeoutCtx(t, 10*time.Second), func() bool { cur, ok := a.View(); return ok && cur.Size() == 2 })
	}()
	startNode(t, "b", key, a.Addr())
	if !<-done {
		t.Fatal("WaitChange did not see the view of 2")
	}
	if cur, _ := a.View(); cur.Generation <= v.Generation {
		t.Fatalf("generation %d after %d", cur.Generation, v.Generation)
	}
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
