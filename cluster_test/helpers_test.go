// Package cluster_test runs real `wkd node` processes on loopback, over a real NATS server
// with a token and memberlist gossip with a key, and checks what the cluster promises:
// N nodes train as one process would, replicas stay bitwise identical after every step, a
// killed, stopped or restarted member (or NATS server) costs at most the step in flight, and
// nodes without the key or token are kept out.
//
// TestMain builds the wkd binary, a tiny dataset and a tiny teacher once; each test starts
// its own NATS server and nodes.
package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wkd/internal/safetensors"
	"wkd/node"
)

var (
	wkdBin     string // the built binary
	dataDir    string // a tiny unaligned dataset (sneaker2boot)
	teacherDir string // a tiny CycleGAN teacher run folder
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "wkd-cluster-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := setup(dir); err != nil {
			fmt.Fprintln(os.Stderr, "cluster_test setup:", err)
			return 1
		}
		return m.Run()
	}())
}

// setup builds the binary (without -race: only the test process runs under it), then the
// dataset and a 2-step teacher.
func setup(dir string) error {
	wkdBin = filepath.Join(dir, "wkd")
	build := exec.Command("go", "build", "-o", wkdBin, "./cmd/wkd")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/wkd: %v\n%s", err, out)
	}
	if out, err := exec.Command(wkdBin, "data", "--name", "sneaker2boot", "--out", filepath.Join(dir, "data"),
		"--train", "32", "--val", "4", "--test", "4").CombinedOutput(); err != nil {
		return fmt.Errorf("wkd data (needs Fashion-MNIST, see 'wkd data -h'): %v\n%s", err, out)
	}
	dataDir = filepath.Join(dir, "data", "sneaker2boot")
	teacherDir = filepath.Join(dir, "teacher")
	if out, err := exec.Command(wkdBin, "train", "--model", "cyclegan", "--data", dataDir, "--out", teacherDir,
		"--max-steps", "2", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--norm", "instance",
		"--load-size", "32", "--crop-size", "32", "--quiet", "--log-format", "json", "--threads", "1").CombinedOutput(); err != nil {
		return fmt.Errorf("wkd train (teacher): %v\n%s", err, out)
	}
	return nil
}

// jobArgs are the flags of a tiny CycleGAN distillation (instance norm, 32x32, global batch 4):
// a step takes tens of milliseconds. The KD distance is MSE; TestEquivalence runs the default
// L1 too.
func jobArgs(out string, steps int) []string {
	return []string{"--model", "cyclegan", "--data", dataDir, "--teacher", teacherDir, "--out", out,
		"--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--norm", "instance", "--load-size", "32", "--crop-size", "32",
		"--batch-size", "4", "--seed", "3", "--kd-loss", "mse", "--max-steps", fmt.Sprint(steps), "--log-every", "1",
		"--checkpoint-every", "100000", "--threads", "1", "--quiet", "--log-format", "json"}
}

// cluster is one test's NATS server, credentials and nodes. With perNode (newCluster) every
// node runs a NATS server of its own and the servers route to each other; srv is a seed
// server in the same NATS cluster, as a log collector's would be, that the tests publish and
// read through but that carries no gradients. Otherwise (newExternalCluster) srv is the one
// server all nodes connect to (wkd node --nats).
type cluster struct {
	t       *testing.T
	perNode bool
	srv     *node.NATSServer
	natsURL string
	port    int
	route   string // the seed server's route address, with perNode
	token   string
	key     string
	dir     string
	mu      sync.Mutex
	procs   []*proc
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return startCluster(t, true)
}

func newExternalCluster(t *testing.T) *cluster {
	t.Helper()
	return startCluster(t, false)
}

func startCluster(t *testing.T, perNode bool) *cluster {
	t.Helper()
	c := &cluster{t: t, perNode: perNode, token: randHex(t, 16), dir: t.TempDir()}
	var err error
	if c.key, err = node.NewGossipKey(); err != nil {
		t.Fatal(err)
	}
	c.startNATS(0)
	t.Cleanup(c.stopAll)
	return c
}

// startNATS starts the in-process server, on port (0: a free one, kept for restarts).
func (c *cluster) startNATS(port int) {
	c.t.Helper()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		cfg := node.NATSConfig{Host: "127.0.0.1", Port: port, Token: c.token, MaxPayload: node.DefaultMaxPayload}
		if c.perNode {
			cfg.ClusterHost = "127.0.0.1"
		}
		c.srv, err = node.StartNATS(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the old listener may linger a moment
	}
	if err != nil {
		c.t.Fatalf("NATS server on port %d: %v", port, err)
	}
	c.port = c.srv.Port()
	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", c.port)
	if c.perNode {
		c.route = fmt.Sprintf("127.0.0.1:%d", c.srv.ClusterPort())
	}
}

// seedCarriedNoGradients checks, with perNode, that the seed server took in less than a
// single gradient all-reduce's worth of bytes (minBytes: what one all-reduce of the run moves)
// while the nodes trained: their servers send to each other directly.
func (c *cluster) seedCarriedNoGradients(minBytes int64) {
	c.t.Helper()
	in, out := c.srv.Traffic()
	c.t.Logf("seed NATS server: %d bytes in, %d out during the run", in, out)
	if c.perNode && in+out >= minBytes {
		c.t.Errorf("the seed server carried %d bytes in and %d out, at least one all-reduce (%d bytes): gradients went through it", in, out, minBytes)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	ps := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
	if c.srv != nil {
		c.srv.Shutdown()
	}
	if c.t.Failed() {
		for _, p := range ps {
			c.t.Logf("---- output of %s (last 60 lines) ----\n%s", p.name, p.tail(60))
		}
	}
}

// nodeSpec is one `wkd node` to start.
type nodeSpec struct {
	name     string
	addr     string   // 127.0.0.1:port
	seeds    []string // host:port
	minNodes int
	steps    int
	extra    []string // more flags
	env      []string // overrides (e.g. a wrong key)
}

// start runs `wkd node` with the cluster's token and key in its environment.
func (c *cluster) start(s nodeSpec) *proc {
	c.t.Helper()
	out := filepath.Join(c.dir, s.name)
	args := []string{"node", "--job", "distill", "--name", s.name, "--bind", s.addr,
		"--seeds", strings.Join(s.seeds, ","), "--min-nodes", fmt.Sprint(s.minNodes)}
	if c.perNode {
		args = append(args, "--nats-listen", "127.0.0.1:0", "--nats-cluster", "127.0.0.1:0", "--nats-routes", c.route)
	} else {
		args = append(args, "--nats", c.natsURL)
	}
	args = append(args, jobArgs(out, s.steps)...)
	args = append(args, s.extra...)
	env := append(os.Environ(), node.NATSTokenEnv+"="+c.token, node.GossipKeyEnv+"="+c.key)
	env = append(env, s.env...)
	p := startProc(c.t, s.name, out, env, args...)
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// startNodes starts n nodes node-0..node-(n-1) that all list each other as seeds and wait for
// minNodes before training.
func (c *cluster) startNodes(n, minNodes, steps int, extra ...string) ([]*proc, []string) {
	addrs := freeAddrs(c.t, n)
	ps := make([]*proc, n)
	for i := range n {
		ps[i] = c.start(nodeSpec{name: fmt.Sprintf("node-%d", i), addr: addrs[i], seeds: addrs, minNodes: minNodes, steps: steps, extra: extra})
	}
	return ps, addrs
}

// line is one JSON log line of a node.
type line struct {
	At     time.Time // the line's own "time" (RFC3339Nano), else when it was read
	Msg    string
	F      map[string]any
	Raw    string
	IsJSON bool
}

func (l line) int(k string) (int64, bool) {
	v, ok := l.F[k].(float64)
	return int64(v), ok
}

func (l line) str(k string) string {
	s, _ := l.F[k].(string)
	return s
}

func (l line) strs(k string) []string {
	var out []string
	if a, ok := l.F[k].([]any); ok {
		for _, v := range a {
			s, _ := v.(string)
			out = append(out, s)
		}
	}
	return out
}

// proc is one running process whose output lines are kept and can be waited for.
type proc struct {
	name string
	out  string // run folder
	cmd  *exec.Cmd

	mu      sync.Mutex
	lines   []line
	changed chan struct{} // closed and replaced on every new line and at exit
	done    chan struct{}
	err     error
}

func startProc(t *testing.T, name, out string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: out, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(wkdBin, args...)
	p.cmd.Env = env
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go p.read(r)
	go func() {
		err := p.cmd.Wait()
		w.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
		p.notify()
	}()
	return p
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := line{At: time.Now(), Raw: sc.Text()}
		if json.Unmarshal(sc.Bytes(), &l.F) == nil {
			l.IsJSON = true
			l.Msg = l.str("message")
			if ts, err := time.Parse(time.RFC3339Nano, l.str("time")); err == nil {
				l.At = ts
			}
		}
		p.mu.Lock()
		p.lines = append(p.lines, l)
		p.mu.Unlock()
		p.notify()
	}
	io.Copy(io.Discard, r)
}

func (p *proc) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// snapshot returns the lines so far.
func (p *proc) snapshot() []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]line(nil), p.lines...)
}

func (p *proc) tail(n int) string {
	ls := p.snapshot()
	var b strings.Builder
	for _, l := range ls[max(0, len(ls)-n):] {
		b.WriteString(l.Raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// waitLine waits until a line at index >= from matches, and returns it and its index.
// It fails the test on timeout or when the process exits first.
func (p *proc) waitLine(t *testing.T, from int, timeout time.Duration, what string, match func(line) bool) (line, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		ch := p.changed
		ls := p.lines
		p.mu.Unlock()
		for i := from; i < len(ls); i++ {
			if match(ls[i]) {
				return ls[i], i
			}
		}
		select {
		case <-ch:
		case <-p.done:
			// Lines still in the pipe arrive before Wait returns; one more look.
			for i, l := range p.snapshot() {
				if i >= from && match(l) {
					return l, i
				}
			}
			t.Fatalf("%s exited (%v) before %s", p.name, p.exitErr(), what)
		case <-deadline:
			t.Fatalf("%s: no %s within %v", p.name, what, timeout)
		}
	}
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v", p.name, timeout)
		return nil
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *proc) signal(s syscall.Signal) {
	if p.cmd.Process != nil && !p.exited() {
		p.cmd.Process.Signal(s)
	}
}

// kill ends the process with SIGKILL (continuing it first, in case it was stopped).
func (p *proc) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	p.cmd.Process.Kill()
	<-p.done
}

// Matchers of the node's log lines.

// isView matches the member's "view agreed" (it carries world and members), of size n (0: any).
func isView(n int) func(line) bool {
	return func(l line) bool {
		w, ok := l.int("world")
		return l.Msg == "view agreed" && ok && (n == 0 || int(w) == n)
	}
}

func isStep(l line) bool {
	_, ok := l.int("step")
	return l.Msg == "step" && ok
}

func isState(l line) bool { return l.Msg == "replica state" && l.str("state_sha") != "" }

func isFinished(l line) bool { return l.Msg == "run finished" }

// steps lists the completed steps a node logged, in order.
func steps(ls []line) []int64 {
	var out []int64
	for _, l := range ls {
		if isStep(l) {
			s, _ := l.int("step")
			out = append(out, s)
		}
	}
	return out
}

// digests maps step -> state_sha of one node's "replica state" lines (the last one per step).
func digests(ls []line) map[int64]string {
	out := map[int64]string{}
	for _, l := range ls {
		if isState(l) {
			s, _ := l.int("step")
			out[s] = l.str("state_sha")
		}
	}
	return out
}

// sameDigests checks that every step logged by more than one of the given nodes has one digest,
// with each node's steps limited to those <= its bound (-1: all). It returns how many steps
// were compared across at least two nodes.
func sameDigests(t *testing.T, who []string, sets []map[int64]string, bounds []int64) int {
	t.Helper()
	type seen struct {
		sha, by string
	}
	first := map[int64]seen{}
	counts := map[int64]int{}
	for i, set := range sets {
		for st, sha := range set {
			if bounds[i] >= 0 && st > bounds[i] {
				continue
			}
			counts[st]++
			if f, ok := first[st]; ok {
				if f.sha != sha {
					t.Errorf("step %d: %s has state %s…, %s has %s…: replicas differ", st, f.by, f.sha[:12], who[i], sha[:12])
				}
				continue
			}
			first[st] = seen{sha, who[i]}
		}
	}
	n := 0
	for _, c := range counts {
		if c > 1 {
			n++
		}
	}
	return n
}

// increasing fails unless a node's completed steps strictly increase (a repeated step number
// would be a completed step lost and done again).
func increasing(t *testing.T, name string, st []int64) {
	t.Helper()
	for i := 1; i < len(st); i++ {
		if st[i] <= st[i-1] {
			t.Errorf("%s: step %d logged after step %d: a completed step was lost (steps %v)", name, st[i], st[i-1], st)
			return
		}
	}
}

// freeAddrs finds n loopback host:port addresses free for TCP and UDP (memberlist uses both).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		u, err := net.ListenPacket("udp", a)
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		out = append(out, a)
	}
	return out
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runCmd runs wkd with args to completion within timeout and returns its output.
func runCmd(t *testing.T, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, wkdBin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wkd %s: %v\n%s", strings.Join(args[:1], " "), err, out)
	}
	return string(out)
}

// loadWeights reads a safetensors file into name -> values.
func loadWeights(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]float32{}
	for n, x := range ts {
		out[n] = x.Data
	}
	return out
}

// has reports whether any of the node's lines contains s.
func has(ls []line, s string) bool {
	for _, l := range ls {
		if bytes.Contains([]byte(l.Raw), []byte(s)) {
			return true
		}
	}
	return false
}
