package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startClusterNATS starts a server with a route listener on a free loopback port that dials
// routes; token is both the client token and the route secret.
func startClusterNATS(t *testing.T, token string, routes ...string) *NATSServer {
	t.Helper()
	cfg := DefaultNATSConfig()
	cfg.Port, cfg.Token = 0, token
	cfg.ClusterHost, cfg.ClusterPort, cfg.Routes = "127.0.0.1", 0, routes
	s, err := StartNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func routeAddr(s *NATSServer) string { return "127.0.0.1:" + strconv.Itoa(s.ClusterPort()) }

// waitRoutes waits until every server has n routes.
func waitRoutes(t *testing.T, n int, servers ...*NATSServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range servers {
		for s.Peers() < n {
			if time.Now().After(deadline) {
				t.Fatalf("server on port %d has %d routes after 10 s, want %d", s.Port(), s.Peers(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// routedNode is a node with a NATS server of its own whose routes KeepRoutes keeps, as wkd
// node runs one, and a client of that server.
type routedNode struct {
	n   *Node
	srv *NATSServer
	nc  *nats.Conn
	// stopRoutes stops KeepRoutes and waits for it to end.
	stopRoutes func()
}

// startRoutedNode starts a node called name with its own server (token "tok"), contacts the
// seeds, and once its server has a route to another member's (if there are others) makes it
// ready to take a rank, as wkd node does. Everything stops when the test ends.
func startRoutedNode(t *testing.T, key []byte, name string, minNodes int, seeds ...string) *routedNode {
	t.Helper()
	srv := startClusterNATS(t, "tok")
	cfg := DefaultLocalConfig()
	cfg.Name, cfg.GossipKey, cfg.RoutePort, cfg.NATSPort, cfg.MinNodes = name, key, srv.ClusterPort(), srv.Port(), minNodes
	n, err := New(cfg, testLogger(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	// Connected before KeepRoutes changes the routes, as wkd node does: nats-server re-checks
	// its clients on every reload and races with a handshake in progress.
	nc := testConn(t, srv, "tok")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { KeepRoutes(ctx, n, srv, nil, 20*time.Millisecond, testLogger(t, name)); close(done) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	if err := n.Contact(seeds); err != nil {
		t.Fatal(err)
	}
	if len(seeds) > 0 {
		eventually(t, 10*time.Second, name+"'s server routed to another member's", func() bool { return srv.Peers() > 0 })
	}
	if err := n.SetState(StateReady); err != nil {
		t.Fatal(err)
	}
	return &routedNode{n: n, srv: srv, nc: nc, stopRoutes: stop}
}

// eventually polls cond every 5 ms and fails the test if it is still false after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchdog ends the test binary with every goroutine's stack if the test, its cleanups
// included, runs past d: a hang fails at once instead of at the package's timeout.
func watchdog(t *testing.T, d time.Duration) {
	timer := time.AfterFunc(d, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("%s still running after %v", t.Name(), d))
	})
	t.Cleanup(func() { timer.Stop() })
}

func testConn(t *testing.T, s *NATSServer, token string) *nats.Conn {
	t.Helper()
	nc, err := Connect(s.ClientURL(), Creds{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// A chain of explicit routes (B dials A, C dials B) becomes a full mesh, and a message goes
// from the publisher's server straight to the subscriber's: the server in between carries
// none of it.
func TestNATSClusterFullMeshDirectRouting(t *testing.T) {
	a := startClusterNATS(t, "tok")
	b := startClusterNATS(t, "tok", routeAddr(a))
	c := startClusterNATS(t, "tok", routeAddr(b))
	waitRoutes(t, 2, a, b, c)

	sub := testConn(t, c, "tok")
	got := make(chan *nats.Msg, 128)
	if _, err := sub.ChanSubscribe("grad.x", got); err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	pub := testConn(t, a, "tok")
	// Interest reaches a over its route to c asynchronously: send until the first arrives.
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		pub.Publish("grad.x", []byte("probe"))
		pub.Flush()
		time.Sleep(10 * time.Millisecond)
	}
	for len(got) > 0 {
		<-got
	}
	before, _ := b.Traffic()
	payload := make([]byte, 64<<10)
	const n = 50
	for i := range n {
		payload[0] = byte(i)
		if err := pub.Publish("grad.x", payload); err != nil {
			t.Fatal(err)
		}
	}
	pub.Flush()
	for i := range n {
		select {
		case m := <-got:
			if len(m.Data) != len(payload) || m.Data[0] != byte(i) {
				t.Fatalf("message %d: %d bytes, first %d", i, len(m.Data), m.Data[0])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d messages", i, n)
		}
	}
	after, _ := b.Traffic()
	if carried := after - before; carried > int64(len(payload)) {
		t.Fatalf("the middle server took in %d bytes of a %d-byte stream between its neighbours", carried, n*len(payload))
	}
}

// A server with another route secret never joins; SetRoutes adds and removes routes.
func TestNATSClusterRouteAuthAndSetRoutes(t *testing.T) {
	a := startClusterNATS(t, "tok")
	intruder := startClusterNATS(t, "other", routeAddr(a))
	b := startClusterNATS(t, "tok")
	if err := b.SetRoutes([]string{routeAddr(a), routeAddr(a), ""}); err != nil {
		t.Fatal(err)
	}
	if got := b.Routes(); len(got) != 1 || got[0] != routeAddr(a) {
		t.Fatalf("Routes() = %v, want [%s]", got, routeAddr(a))
	}
	waitRoutes(t, 1, a, b)
	time.Sleep(300 * time.Millisecond) // the intruder's dial, refused, would have landed by now
	if n := a.Peers(); n != 1 {
		t.Fatalf("server has %d routes, want 1 (the intruder with another secret must be refused)", n)
	}
	if n := intruder.Peers(); n != 0 {
		t.Fatalf("intruder has %d routes", n)
	}
	// Messages from the intruder's clients never reach the cluster.
	sub := testConn(t, b, "tok")
	s, _ := sub.SubscribeSync("x")
	sub.Flush()
	in := testConn(t, intruder, "other")
	in.Publish("x", []byte("forged"))
	in.Flush()
	if m, err := s.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("got %q from a server outside the cluster", m.Data)
	}

	if err := b.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if err := b.SetRoutes([]string{"no-port"}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("SetRoutes(no-port) = %v, want ErrBadConfig", err)
	}
	lone := startTestNATS(t, 0)
	if err := lone.SetRoutes([]string{routeAddr(a)}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("SetRoutes on a server without a cluster listener = %v, want ErrBadConfig", err)
	}
}

func TestNATSClusterConfigValidate(t *testing.T) {
	for _, c := range []NATSConfig{
		{Token: "t", ClusterHost: "127.0.0.1", ClusterPort: 70000},
		{Token: "t", ClusterHost: "127.0.0.1", Routes: []string{"host-without-port"}},
		{Token: "t", ClusterHost: "127.0.0.1", ClusterAdvertise: "x"},
		{NKey: "UABC", ClusterHost: "127.0.0.1"},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: Validate() = %v, want ErrBadConfig", c, err)
		}
	}
	if _, err := StartNATS(NATSConfig{Token: "t", Routes: []string{"127.0.0.1:1"}}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("routes without a cluster listener: %v", err)
	}
}

// Three nodes, each with its own server and KeepRoutes: the servers form a full mesh from
// the membership alone, and a node that goes away leaves the others' route lists.
func TestKeepRoutesFollowsMembership(t *testing.T) {
	key := testKey(t)
	watchdog(t, time.Minute)
	a := startRoutedNode(t, key, "a", 1)
	b := startRoutedNode(t, key, "b", 1, a.n.Addr())
	c := startRoutedNode(t, key, "c", 1, a.n.Addr())
	waitRoutes(t, 2, a.srv, b.srv, c.srv)
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range []*routedNode{a, b, c} {
		for len(m.srv.Routes()) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := m.srv.Routes(); len(got) != 2 || slices.Contains(got, routeAddr(m.srv)) {
			t.Fatalf("%s dials %v, want the other two servers", m.n.cfg.Name, got)
		}
	}
	// Each announces where its server takes clients, at the address the others reach it at.
	for _, x := range a.n.Members() {
		var want string
		for _, m := range []*routedNode{a, b, c} {
			if m.n.cfg.Name == x.Name {
				want = fmt.Sprintf("nats://127.0.0.1:%d", m.srv.Port())
			}
		}
		if x.NATSURL != want {
			t.Errorf("a sees %s announce NATS URL %q, want %q", x.Name, x.NATSURL, want)
		}
	}

	c.stopRoutes()
	c.n.Leave()
	c.n.Shutdown()
	c.srv.Shutdown()
	deadline = time.Now().Add(10 * time.Second)
	for {
		ra, rb := a.srv.Routes(), b.srv.Routes()
		if len(ra) == 1 && len(rb) == 1 && a.srv.Peers() == 1 && b.srv.Peers() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after c left: a dials %v (%d peers), b dials %v (%d peers); want each other only", ra, a.srv.Peers(), rb, b.srv.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
