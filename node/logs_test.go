package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// stuckPublisher blocks every Publish until released, like a NATS link that stopped draining.
type stuckPublisher struct {
	release chan struct{}
	mu      sync.Mutex
	got     [][]byte
}

func (p *stuckPublisher) Publish(subject string, b []byte) error {
	<-p.release
	p.mu.Lock()
	p.got = append(p.got, append([]byte(subject+" "), b...))
	p.mu.Unlock()
	return nil
}

func (p *stuckPublisher) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, b := range p.got {
		out = append(out, string(b))
	}
	return out
}

// writeTimes logs n lines and returns the slowest and the 99th percentile Write. A blocked
// Write shows as a slowest time of seconds; scheduler noise on a shared machine as tens of ms.
func writeTimes(n int, write func(i int)) (max, p99 time.Duration) {
	d := make([]time.Duration, n)
	for i := range d {
		t0 := time.Now()
		write(i)
		d[i] = time.Since(t0)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[n-1], d[n*99/100]
}

func TestShipperNeverBlocksOnStuckPublisher(t *testing.T) {
	pub := &stuckPublisher{release: make(chan struct{})}
	const capLines, n = 64, 20000
	ship := NewShipper(pub, "n1", ShipLines(capLines), ShipDropReport(time.Hour))
	var stdout bytes.Buffer
	log := NewLogger("n1", &stdout, ship)

	max, p99 := writeTimes(n, func(i int) { log.Info().Int("i", i).Msg("step") })
	t.Logf("%d lines into a stuck publisher: p99 %v, slowest %v per line; dropped %d", n, p99, max, ship.Dropped())
	if max > time.Second || p99 > time.Millisecond {
		t.Fatalf("Write p99 %v, slowest %v with the publisher stuck", p99, max)
	}
	if d := ship.Dropped(); d != n-capLines && d != n-capLines-1 {
		t.Fatalf("dropped %d, want %d or %d", d, n-capLines, n-capLines-1)
	}
	if got := strings.Count(stdout.String(), "\n"); got != n {
		t.Fatalf("stdout got %d lines, want all %d", got, n)
	}

	close(pub.release)
	if err := ship.Close(); err != nil {
		t.Fatal(err)
	}
	lines := pub.lines()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "wkd.logs.n1 ") || !strings.Contains(last, `"dropped":`) || !strings.Contains(last, `"node":"n1"`) {
		t.Fatalf("last shipped line is not the drop report: %q", last)
	}
	var rep struct{ Dropped, DroppedTotal uint64 }
	json.Unmarshal([]byte(strings.TrimPrefix(last, "wkd.logs.n1 ")), &rep)
	if rep.Dropped == 0 {
		t.Fatalf("drop report %q", last)
	}
}

func TestShipperCloseGivesUpOnStuckPublisher(t *testing.T) {
	pub := &stuckPublisher{release: make(chan struct{})}
	defer close(pub.release)
	ship := NewShipper(pub, "n1")
	ship.Write([]byte("x\n"))
	t0 := time.Now()
	if err := ship.Close(); err == nil {
		t.Fatal("Close returned nil with the publisher stuck")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestShipperAbsentCollectorAndServer(t *testing.T) {
	s := startTestNATS(t, 0)
	nc, err := Connect(s.ClientURL(), Creds{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ship := NewShipper(nc, "n1", ShipLines(256))
	log := NewLogger("n1", io.Discard, ship)
	// No subscriber at all, then no server at all (the client is reconnecting).
	max, p99 := writeTimes(2000, func(i int) { log.Info().Int("i", i).Msg("nobody listens") })
	s.Shutdown()
	max2, p99b := writeTimes(20000, func(i int) { log.Info().Int("i", i).Str("pad", strings.Repeat("x", 512)).Msg("server gone") })
	t.Logf("no collector: p99 %v slowest %v; server down: p99 %v slowest %v; dropped %d", p99, max, p99b, max2, ship.Dropped())
	if max > time.Second || max2 > time.Second || p99 > time.Millisecond || p99b > time.Millisecond {
		t.Fatalf("Write blocked: p99 %v slowest %v / p99 %v slowest %v", p99, max, p99b, max2)
	}
	ship.Close()
}

func TestCollectLogsMergesNodes(t *testing.T) {
	s := startTestNATS(t, 0)
	conn := func() Publisher {
		nc, err := Connect(s.ClientURL(), Creds{Token: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	cnc, err := Connect(s.ClientURL(), Creds{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	type result struct {
		counts map[string]int
		err    error
	}
	res := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		c, err := CollectLogs(ctx, cnc, &out)
		res <- result{c, err}
	}()
	<-started
	time.Sleep(100 * time.Millisecond) // let the subscription reach the server
	want := map[string]int{"a": 30, "b": 20}
	var ships []*Shipper
	for name, n := range want {
		sh := NewShipper(conn(), name)
		ships = append(ships, sh)
		l := NewLogger(name, &bytes.Buffer{}, sh).With().Int("rank", 0).Uint64("generation", 3).Logger()
		for i := 0; i < n; i++ {
			l.Info().Int("step", i).Msg("step done")
		}
	}
	for _, sh := range ships {
		sh.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(out.String(), "\n") < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.counts["a"] != 30 || r.counts["b"] != 20 {
		t.Fatalf("counts %v, want %v", r.counts, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["node"] == nil || m["generation"] == nil || m["step"] == nil {
			t.Fatalf("line %q: %v", line, err)
		}
	}
}

// lockedBuffer is a bytes.Buffer the test may read while CollectLogs writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
