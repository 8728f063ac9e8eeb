package allreduce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The test binary doubles as a rank process when this variable is set.
const helperEnv = "WKD_ALLREDUCE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperMain is one rank: it all-reduces two steps, then begins a third. The rank named by
// VICTIM stops after its first bucket of step 3 and waits to be killed.
func helperMain() int {
	atoi := func(k string) int { v, _ := strconv.Atoi(os.Getenv(k)); return v }
	rank, size, victim := atoi("RANK"), atoi("SIZE"), atoi("VICTIM")
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.Token(testToken))
	if err != nil {
		fmt.Println("ERR", err)
		return 2
	}
	cfg := fastConfig()
	cfg.TimeoutTicks = 200 // 1 s: processes built with -race are slow
	r, err := New(nc, cfg, View{Generation: 1, Self: rank, Size: size}, testSubjects(size))
	if err != nil {
		fmt.Println("ERR", err)
		return 2
	}
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitPeers(wctx); err != nil { // the processes start at different times
		fmt.Println("ERR", err)
		return 2
	}
	buckets := func() [][]float32 {
		b := [][]float32{make([]float32, 1<<18), make([]float32, 1<<18)}
		for i := range b[0] {
			b[0][i], b[1][i] = float32(rank), float32(i)
		}
		return b
	}
	for step := uint64(1); step <= 2; step++ {
		b := buckets()
		if err := r.AllReduce(ctx, 1, step, b); err != nil {
			fmt.Println("ERR", err)
			return 3
		}
		if want := float32(size-1) / 2; b[0][7] != want {
			fmt.Println("ERR mean", b[0][7], "want", want)
			return 3
		}
		fmt.Println("step", step, "ok")
	}
	b := buckets()
	if err := r.Begin(1, 3, 2); err != nil {
		fmt.Println("ERR", err)
		return 3
	}
	if err := r.Submit(0, b[0]); err != nil {
		fmt.Println("ERR", err)
		return 3
	}
	if rank == victim {
		fmt.Println("mid")
		select {} // killed here
	}
	if err := r.Submit(1, b[1]); err != nil {
		fmt.Println("ERR", err)
		return 3
	}
	err = r.Wait(ctx)
	switch {
	case errors.Is(err, ErrTimeout):
		fmt.Println("TIMEOUT", err)
	case errors.Is(err, ErrPeerAborted):
		fmt.Println("ABORTED", err)
	default:
		fmt.Println("ERR unexpected", err)
		return 3
	}
	return 0
}

// Real processes: one is killed with SIGKILL in the middle of an all-reduce; the others must
// return ErrTimeout or ErrPeerAborted within seconds.
func TestProcessKilledMidAllReduce(t *testing.T) {
	url := startNATS(t)
	const size, victim = 3, 1
	type proc struct {
		cmd   *exec.Cmd
		lines chan string
		done  chan error
	}
	procs := make([]*proc, size)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=1", "NATS_URL="+url,
			fmt.Sprintf("RANK=%d", i), fmt.Sprintf("SIZE=%d", size), fmt.Sprintf("VICTIM=%d", victim))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
			close(p.lines)
			p.done <- cmd.Wait()
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		procs[i] = p
	}
	expect := func(p *proc, prefix string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-p.lines:
				if !ok {
					t.Fatalf("process exited before printing %q", prefix)
				}
				if strings.HasPrefix(l, "ERR") {
					t.Fatalf("process: %s", l)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q within %v", prefix, within)
			}
		}
	}
	expect(procs[victim], "mid", 60*time.Second)
	if err := procs[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for i, p := range procs {
		if i == victim {
			continue
		}
		select {
		case l := <-p.lines:
			for strings.HasPrefix(l, "step") {
				l = <-p.lines
			}
			if !strings.HasPrefix(l, "TIMEOUT") && !strings.HasPrefix(l, "ABORTED") {
				t.Fatalf("rank %d after the kill: %q", i, l)
			}
			t.Logf("rank %d, %v after the kill: %s", i, time.Since(killed).Round(time.Millisecond), l)
		case <-time.After(5 * time.Second):
			t.Fatalf("rank %d still running 5 s after its peer was killed: a hang", i)
		}
		if err := <-p.done; err != nil {
			t.Fatalf("rank %d exit: %v", i, err)
		}
	}
}
