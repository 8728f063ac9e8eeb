package cluster_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"wkd/allreduce"
	"wkd/node"
)

// long makes a run long enough to survive faults: the tiny dataset has 8 steps per epoch.
var long = []string{"--epochs", "1000", "--epochs-decay", "0"}

// recoveryBound is the promise: survivors agree a new view this soon after a crash.
const recoveryBound = 5 * time.Second

// lastStepBefore is the last completed step a node logged at index < end (0: none).
func lastStepBefore(ls []line, end int) int64 {
	var s int64
	for _, l := range ls[:end] {
		if isStep(l) {
			s, _ = l.int("step")
		}
	}
	return s
}

// awaitSteps waits until p logs a completed step >= step after index from.
func awaitStep(t *testing.T, p *proc, from int, step int64, timeout time.Duration) (line, int) {
	t.Helper()
	return p.waitLine(t, from, timeout, fmt.Sprintf("step >= %d", step), func(l line) bool {
		s, ok := l.int("step")
		return isStep(l) && ok && s >= step
	})
}

func viewWith(n int, must, mustNot string) func(line) bool {
	return func(l line) bool {
		if !isView(n)(l) {
			return false
		}
		m := l.strs("members")
		return (must == "" || slices.Contains(m, must)) && (mustNot == "" || !slices.Contains(m, mustNot))
	}
}

// partial is a part of a node's log whose digests count only up to bound: a node that was
// killed or stopped may have completed a step that the others rolled back and did again
// without it.
type partial struct {
	name  string
	lines []line
	bound int64
}

// checkRun checks that each finished node's steps strictly increase and end at total, and
// that all replicas' digests agree on every step, the partial logs' only up to their bounds.
func checkRun(t *testing.T, total int64, finished []*proc, parts ...partial) {
	t.Helper()
	var names []string
	var sets []map[int64]string
	var bs []int64
	for _, p := range finished {
		ls := p.snapshot()
		st := steps(ls)
		increasing(t, p.name, st)
		if len(st) == 0 || st[len(st)-1] != total {
			t.Errorf("%s: last step %v, want %d", p.name, st[max(0, len(st)-1):], total)
		}
		names, sets, bs = append(names, p.name), append(sets, digests(ls)), append(bs, -1)
	}
	for _, p := range parts {
		increasing(t, p.name, steps(p.lines))
		names, sets, bs = append(names, p.name), append(sets, digests(p.lines)), append(bs, p.bound)
	}
	n := sameDigests(t, names, sets, bs)
	t.Logf("replica digests agree on %d steps seen by two nodes or more", n)
	if n < 10 {
		t.Errorf("only %d steps had digests from two nodes or more", n)
	}
}

// TestKillAndRestart kills one of three nodes with SIGKILL mid-run: the two survivors agree a
// view of two within 5 s, lose no completed step and stay identical; the killed node, started
// again, receives the state and trains; the run finishes.
func TestKillAndRestart(t *testing.T) {
	const total = 150
	c := newCluster(t)
	ps, addrs := c.startNodes(3, 2, total, long...)
	survivors, victim := []*proc{ps[0], ps[2]}, ps[1]
	_, vi := victim.waitLine(t, 0, 30*time.Second, "a view of 3", isView(3))
	first, _ := awaitStep(t, victim, vi, 1, 30*time.Second)
	s0, _ := first.int("step")
	awaitStep(t, victim, vi, s0+15, 30*time.Second)

	marks := []int{len(survivors[0].snapshot()), len(survivors[1].snapshot())}
	killed := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done

	var worstView, worstStep time.Duration
	var lastBefore []int64
	viewAt := make([]int, 2)
	for i, p := range survivors {
		v, vi := p.waitLine(t, marks[i], 30*time.Second, "a view of 2 without node-1", viewWith(2, "", "node-1"))
		viewAt[i] = vi
		worstView = max(worstView, v.At.Sub(killed))
		lastBefore = append(lastBefore, lastStepBefore(p.snapshot(), vi))
	}
	resumeFrom := max(lastBefore[0], lastBefore[1])
	for i, p := range survivors {
		st, _ := awaitStep(t, p, viewAt[i], 1, 30*time.Second)
		worstStep = max(worstStep, st.At.Sub(killed))
		if s, _ := st.int("step"); s != resumeFrom+1 {
			t.Errorf("%s: first step after the crash is %d; the survivors had completed %v, so want %d", p.name, s, lastBefore, resumeFrom+1)
		}
	}
	t.Logf("kill -9 node-1 at step ~%d: survivors agreed a view of 2 after %v, completed the next step after %v (resumed from step %d; survivors had %v)",
		resumeFrom, worstView.Round(time.Millisecond), worstStep.Round(time.Millisecond), resumeFrom, lastBefore)
	if worstView > recoveryBound {
		t.Errorf("survivors took %v to agree a new view after the kill, want <= %v", worstView, recoveryBound)
	}

	// The same node comes back on the same address.
	restarted := c.start(nodeSpec{name: "node-1", addr: addrs[1], seeds: addrs, minNodes: 2, steps: total, extra: long})
	restartedAt := time.Now()
	got, gi := restarted.waitLine(t, 0, 30*time.Second, "received the state", func(l line) bool { return l.Msg == "received the state" })
	gs, _ := got.int("step")
	after, _ := awaitStep(t, restarted, gi, gs+1, 30*time.Second)
	t.Logf("restarted node-1 received the state at step %d after %v and completed step %d after %v",
		gs, got.At.Sub(restartedAt).Round(time.Millisecond), func() int64 { s, _ := after.int("step"); return s }(), after.At.Sub(restartedAt).Round(time.Millisecond))
	for i, p := range survivors {
		p.waitLine(t, viewAt[i], 10*time.Second, "a view of 3 with the restarted node-1", viewWith(3, "node-1", ""))
	}
	all := append(survivors, restarted)
	for _, p := range all {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	checkRun(t, total, all, partial{"node-1 (killed)", victim.snapshot(), resumeFrom})
	c.seedCarriedNoGradients(stateBytes(t, survivors))
}

// stateBytes is the size of the encoded state a node sent to a joiner (weights, Adam moments
// and image pools): more than one all-reduce of the gradients moves.
func stateBytes(t *testing.T, ps []*proc) int64 {
	t.Helper()
	for _, p := range ps {
		for _, l := range p.snapshot() {
			if b, ok := l.int("bytes"); ok && l.Msg == "sent the state to the replicas behind" {
				return b
			}
		}
	}
	t.Fatal("no node logged the state it sent")
	return 0
}

// TestNATSRestart shuts the NATS server down mid-run and starts it again on the same port:
// the nodes reconnect, resume from the last completed step and finish with identical replicas.
func TestNATSRestart(t *testing.T) {
	const total = 120
	c := newExternalCluster(t)
	ps, _ := c.startNodes(2, 2, total, long...)
	_, vi := ps[0].waitLine(t, 0, 30*time.Second, "a view of 2", isView(2))
	awaitStep(t, ps[0], vi, 20, 30*time.Second)
	marks := []int{len(ps[0].snapshot()), len(ps[1].snapshot())}
	c.srv.Shutdown()
	down := time.Now()
	time.Sleep(1500 * time.Millisecond)
	c.startNATS(c.port)
	up := time.Now()
	var lastBefore []int64
	for i, p := range ps {
		lastBefore = append(lastBefore, lastStepBefore(p.snapshot(), marks[i]))
	}
	for i, p := range ps {
		// The outage broke the ring: the step in flight was rolled back and a new view agreed.
		p.waitLine(t, marks[i], 30*time.Second, "a rollback during the outage", func(l line) bool {
			return l.Msg == "view changed under the step; resuming from the last completed step"
		})
		p.waitLine(t, marks[i], 30*time.Second, "a new view after the outage", isView(2))
		// The first step completed after the server came back.
		l, _ := p.waitLine(t, marks[i], 30*time.Second, "a step after the NATS restart", func(l line) bool { return isStep(l) && l.At.After(up) })
		s, _ := l.int("step")
		t.Logf("%s: NATS down %v; first step after it is back: %d, %v after the restart (last before the outage %d)",
			p.name, up.Sub(down).Round(time.Millisecond), s, l.At.Sub(up).Round(time.Millisecond), lastBefore[i])
		if l.At.Sub(up) > recoveryBound {
			t.Errorf("%s resumed %v after NATS came back, want <= %v", p.name, l.At.Sub(up), recoveryBound)
		}
	}
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	checkRun(t, total, ps)
}

// TestStoppedNode stops one of three nodes (SIGSTOP) for longer than the all-reduce timeout,
// then continues it: the others drop it and go on; it rejoins, receives the state and trains.
func TestStoppedNode(t *testing.T) {
	const total = 150
	c := newCluster(t)
	ps, _ := c.startNodes(3, 2, total, append(long, "--allreduce-timeout", "1s")...)
	sleeper := ps[2]
	_, vi := sleeper.waitLine(t, 0, 30*time.Second, "a view of 3", isView(3))
	first, _ := awaitStep(t, sleeper, vi, 1, 30*time.Second)
	s0, _ := first.int("step")
	awaitStep(t, sleeper, vi, s0+15, 30*time.Second)
	others := []*proc{ps[0], ps[1]}
	marks := []int{len(ps[0].snapshot()), len(ps[1].snapshot())}
	sleepMark := len(sleeper.snapshot())
	stopped := time.Now()
	sleeper.signal(syscall.SIGSTOP)
	viewAt := make([]int, 2)
	var resumeFrom int64
	for i, p := range others {
		v, vi := p.waitLine(t, marks[i], 30*time.Second, "a view of 2 without node-2", viewWith(2, "", "node-2"))
		viewAt[i] = vi
		resumeFrom = max(resumeFrom, lastStepBefore(p.snapshot(), vi))
		t.Logf("%s: view of 2 agreed %v after SIGSTOP", p.name, v.At.Sub(stopped).Round(time.Millisecond))
		if v.At.Sub(stopped) > recoveryBound {
			t.Errorf("%s agreed the view without the stopped node after %v, want <= %v", p.name, v.At.Sub(stopped), recoveryBound)
		}
		awaitStep(t, p, vi, 1, 30*time.Second)
	}
	time.Sleep(time.Until(stopped.Add(3 * time.Second))) // three all-reduce timeouts
	sleeper.signal(syscall.SIGCONT)
	cont := time.Now()
	got, gi := sleeper.waitLine(t, sleepMark, 30*time.Second, "received the state after SIGCONT", func(l line) bool { return l.Msg == "received the state" })
	gs, _ := got.int("step")
	awaitStep(t, sleeper, gi, gs+1, 30*time.Second)
	t.Logf("node-2 continued: received the state (step %d) %v after SIGCONT", gs, got.At.Sub(cont).Round(time.Millisecond))
	for i, p := range others {
		p.waitLine(t, viewAt[i], 10*time.Second, "a view of 3 with node-2 back", viewWith(3, "node-2", ""))
	}
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	// Before it received the state, the stopped node may have completed the step in flight,
	// which the others rolled back (its chunks to them were still queued): that part counts
	// only up to the step the others resumed from.
	ls := sleeper.snapshot()
	checkRun(t, total, others, partial{"node-2 (before the state)", ls[:gi], resumeFrom}, partial{"node-2 (after the state)", ls[gi:], -1})
	if s := steps(ls); len(s) == 0 || s[len(s)-1] != total {
		t.Errorf("node-2 did not finish at step %d", total)
	}
}

// TestStaleAndDuplicateChunks replays every frame sent to node-1 a second time, some late
// enough to be of a finished step, and adds frames of an old generation and step and garbage:
// the run completes, and its final state is bit for bit that of an undisturbed run.
func TestStaleAndDuplicateChunks(t *testing.T) {
	const total = 30
	run := func(inject bool) string {
		c := newCluster(t)
		ps, _ := c.startNodes(3, 3, total)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var replayed, forged int
		if inject {
			nc, err := node.Connect(c.natsURL, node.Creds{Token: c.token}, nats.NoEcho())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			subj := allreduce.Subject("wkd", "node-1")
			in := make(chan *nats.Msg, 1<<16)
			sub, err := nc.ChanSubscribe(subj, in)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			nc.Flush()
			forge := func(gen, step uint64, typ allreduce.Type) {
				m := &allreduce.Message{Type: typ, From: 0, To: 1, Generation: gen, Step: step, BucketLen: 8, Data: []float32{1e9, -1e9, 3, 4}}
				if typ != allreduce.MsgChunk {
					m.Data = nil
				}
				b, err := allreduce.Marshal(m)
				if err != nil {
					t.Error(err)
					return
				}
				nc.Publish(subj, b)
				forged++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var held [][]byte
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case m := <-in:
						fr, err := allreduce.Unmarshal(m.Data)
						if err != nil {
							continue
						}
						nc.Publish(subj, m.Data) // a duplicate, at once
						replayed++
						held = append(held, m.Data)
						// Frames of the past: an earlier step, the generation before, generation 0.
						// Two steps back: a frame of step S from rank 0 can reach node-1 while
						// node-1 still finishes step S-1, so S-1 may be current there.
						if fr.Step > 2 {
							forge(fr.Generation, fr.Step-2, allreduce.MsgChunk)
						}
						if fr.Generation > 0 {
							forge(fr.Generation-1, fr.Step, allreduce.MsgChunk)
							forge(fr.Generation-1, fr.Step, allreduce.MsgAbort)
						}
					case <-tick.C:
						for _, b := range held { // the same frames again, a step or so later
							nc.Publish(subj, b)
							replayed++
						}
						held = held[:0]
						nc.Publish(subj, []byte("not a frame"))
						forge(0, 1, allreduce.MsgChunk)
					}
				}
			}()
		}
		for _, p := range ps {
			if err := p.wait(t, 60*time.Second); err != nil {
				t.Fatalf("%s: %v\n%s", p.name, err, p.tail(20))
			}
		}
		close(stop)
		wg.Wait()
		checkRun(t, total, ps)
		for _, p := range ps {
			for _, l := range p.snapshot() {
				if l.Msg == "view changed under the step; resuming from the last completed step" || l.Msg == "step abandoned; rolled back" {
					t.Errorf("%s abandoned a step: %s", p.name, l.Raw)
				}
			}
		}
		if inject {
			t.Logf("replayed %d frames to node-1, forged %d stale ones", replayed, forged)
			if replayed == 0 {
				t.Fatal("no frame was replayed: the injector saw no traffic to node-1")
			}
		}
		return digests(ps[0].snapshot())[total]
	}
	clean := run(false)
	dirty := run(true)
	if clean == "" || clean != dirty {
		t.Errorf("final state with injected frames %q, undisturbed %q: want equal", dirty, clean)
	}
}

// TestShortStall stops a node for less than failure detection takes but longer than the
// all-reduce timeout: the ring breaks while the membership does not change. The nodes must
// agree a new view (a ring cannot restart in the same generation) and finish identical.
func TestShortStall(t *testing.T) {
	const total = 60
	c := newCluster(t)
	ps, _ := c.startNodes(3, 3, total, append(long, "--allreduce-timeout", "250ms")...)
	sleeper := ps[2]
	_, vi := sleeper.waitLine(t, 0, 30*time.Second, "a view of 3", isView(3))
	first, _ := awaitStep(t, sleeper, vi, 1, 30*time.Second)
	s0, _ := first.int("step")
	awaitStep(t, sleeper, vi, s0+10, 30*time.Second)
	marks := []int{len(ps[0].snapshot()), len(ps[1].snapshot())}
	sleeper.signal(syscall.SIGSTOP)
	time.Sleep(500 * time.Millisecond)
	sleeper.signal(syscall.SIGCONT)
	for i, p := range ps[:2] {
		p.waitLine(t, marks[i], 30*time.Second, "a rollback after the stall", func(l line) bool {
			return l.Msg == "view changed under the step; resuming from the last completed step"
		})
	}
	for _, p := range ps {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", p.name, err, p.tail(10))
		}
		n := 0
		for _, l := range p.snapshot() {
			if l.Msg == "ring broke in an unchanged view; leaving it for a new one" {
				n++
			}
		}
		t.Logf("%s stepped out of an unchanged view %d times", p.name, n)
	}
	checkRun(t, total, ps)
}

// TestWholeClusterRestart stops every node (SIGTERM, as Ctrl-C or `docker-compose down` do)
// mid-run over one shared run folder, then starts a cluster again under other names: it
// continues from the newest checkpoint in the folder (the step rank 0 saved on the way out)
// and finishes the run with identical replicas.
func TestWholeClusterRestart(t *testing.T) {
	const total = 80
	c := newCluster(t)
	shared := filepath.Join(c.dir, "run")
	flags := append([]string{"--out", shared, "--checkpoint-every", "10"}, long...)
	ps, _ := c.startNodes(2, 2, total, flags...)
	_, vi := ps[0].waitLine(t, 0, 30*time.Second, "a view of 2", isView(2))
	awaitStep(t, ps[0], vi, 25, 30*time.Second)
	for _, p := range ps {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		p.wait(t, 30*time.Second) // an interrupted run exits with an error saying so
	}
	ckpts := loadCheckpoints(t, shared)
	newest := int64(0)
	for s := range ckpts {
		newest = max(newest, s)
	}
	stopped := max(lastStepBefore(ps[0].snapshot(), len(ps[0].snapshot())), lastStepBefore(ps[1].snapshot(), len(ps[1].snapshot())))
	t.Logf("stopped at step %d; newest checkpoint in the run folder: step %d", stopped, newest)
	if newest < stopped {
		t.Fatalf("newest checkpoint is of step %d, before the last step the nodes logged (%d): rank 0 wrote none when stopped", newest, stopped)
	}

	addrs := freeAddrs(t, 2)
	again := make([]*proc, 2)
	for i, name := range []string{"other-a", "other-b"} {
		again[i] = c.start(nodeSpec{name: name, addr: addrs[i], seeds: addrs, minNodes: 2, steps: total, extra: flags})
	}
	resumed := false
	for _, p := range again {
		l, _ := p.waitLine(t, 0, 30*time.Second, "a first step", isStep)
		if s, _ := l.int("step"); s != newest+1 {
			t.Errorf("%s: first step after the restart is %d, want %d (the newest checkpoint's next)", p.name, s, newest+1)
		}
		resumed = resumed || has(p.snapshot(), `"message":"resumed"`)
	}
	if !resumed {
		t.Error("no restarted node logged that it resumed from the run folder")
	}
	for _, p := range again {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	checkRun(t, total, again)
}
