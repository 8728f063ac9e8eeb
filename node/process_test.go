package node

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The test binary doubles as a node process: with WKD_NODE_HELPER=1 it runs helperMain.
const helperEnv = "WKD_NODE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperEvent is one line a helper prints on stdout.
type helperEvent struct {
	Addr    string   `json:"addr,omitempty"`
	Gen     uint64   `json:"gen,omitempty"`
	Members []string `json:"members,omitempty"`
	Rank    int      `json:"rank"`
}

// helperMain runs one node: prints its address, joins WKD_NODE_SEEDS, prints every view.
// It exits when stdin closes (the test ended) or on SIGKILL.
func helperMain() int {
	cfg := DefaultLocalConfig()
	cfg.Name = os.Getenv("WKD_NODE_NAME")
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("node", cfg.Name).Logger()
	n, err := New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(helperEvent{Addr: n.Addr()})
	var seeds []string
	if s := os.Getenv("WKD_NODE_SEEDS"); s != "" {
		seeds = strings.Split(s, ",")
	}
	if err := n.Join(seeds); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		n.Shutdown()
	}()
	for v := range n.Views() {
		enc.Encode(helperEvent{Gen: v.Generation, Members: v.Names(), Rank: v.Rank()})
	}
	return 0
}

type helperProc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.Closer
	addr  chan string
	mu    sync.Mutex
	last  helperEvent
}

func (p *helperProc) view() helperEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func startHelper(t *testing.T, name, key string, seeds ...string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "WKD_NODE_NAME="+name,
		GossipKeyEnv+"="+key, "WKD_NODE_SEEDS="+strings.Join(seeds, ","))
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &helperProc{name: name, cmd: cmd, stdin: stdin, addr: make(chan string, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e helperEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				continue
			}
			if e.Addr != "" {
				p.addr <- e.Addr
				continue
			}
			p.mu.Lock()
			p.last = e
			p.mu.Unlock()
		}
	}()
	select {
	case a := <-p.addr:
		p.addr <- a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return p
}

func (p *helperProc) Addr() string { a := <-p.addr; p.addr <- a; return a }

// waitProcs waits until every process reports the same generation with exactly want.
func waitProcs(t *testing.T, within time.Duration, after uint64, want []string, ps ...*helperProc) (uint64, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		var gen uint64
		for i, p := range ps {
			v := p.view()
			if i == 0 {
				gen = v.Gen
			}
			if v.Gen != gen || v.Gen <= after || fmt.Sprint(v.Members) != fmt.Sprint(want) || v.Members[v.Rank] != p.name {
				ok = false
			}
		}
		if ok {
			return gen, time.Since(start)
		}
		if time.Since(start) > within {
			for _, p := range ps {
				t.Logf("%s: %+v", p.name, p.view())
			}
			t.Fatalf("processes did not agree on %v (generation > %d) within %v", want, after, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProcessesAgreeAcrossKill9(t *testing.T) {
	key, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	p1 := startHelper(t, "n1", key)
	p2 := startHelper(t, "n2", key, p1.Addr())
	p3 := startHelper(t, "n3", key, p1.Addr())
	g1, took := waitProcs(t, 10*time.Second, 0, []string{"n1", "n2", "n3"}, p1, p2, p3)
	t.Logf("3 processes agreed on generation %d in %v", g1, took)

	if err := p2.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p2.cmd.Wait()
	g2, took := waitProcs(t, 5*time.Second, g1, []string{"n1", "n3"}, p1, p3)
	t.Logf("kill -9 n2: survivors agreed on generation %d with 2 members in %v", g2, took)
	if took > 3*time.Second {
		t.Errorf("survivors took %v to agree without n2; want about 2 s", took)
	}

	p2b := startHelper(t, "n2", key, p1.Addr())
	g3, took := waitProcs(t, 10*time.Second, g2, []string{"n1", "n2", "n3"}, p1, p2b, p3)
	t.Logf("restarted n2: generation %d with 3 members in %v", g3, took)
}
