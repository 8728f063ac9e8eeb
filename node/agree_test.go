package node

import (
	"fmt"
	"math/rand"
	"testing"
)

// simNet drives Agreements through an in-memory network that drops, delays and cuts messages.
// Time is the step counter; every step ticks every node once. Seeded, no sleeps.
type simNet struct {
	t        *testing.T
	rng      *rand.Rand
	now      int
	nodes    map[string]*Agreement
	order    []string // deterministic iteration
	flight   []flight
	drop     float64 // probability a message is lost
	maxDelay int     // extra steps a message may take
	cut      map[[2]string]bool
	views    map[string][]View
}

type flight struct {
	due int
	msg Message
}

func newSimNet(t *testing.T, seed int64) *simNet {
	return &simNet{t: t, rng: rand.New(rand.NewSource(seed)), nodes: map[string]*Agreement{},
		cut: map[[2]string]bool{}, views: map[string][]View{}}
}

func member(name, id string) Member {
	return Member{Name: name, ID: id, State: StateReady, NATSURL: "nats://" + name, Addr: name + ":1"}
}

func (s *simNet) add(m Member, minNodes, maxNodes int) *Agreement {
	a := NewAgreement(m, minNodes, maxNodes, 3)
	if _, ok := s.nodes[m.Name]; !ok {
		s.order = append(s.order, m.Name)
	}
	s.nodes[m.Name] = a
	return a
}

// isolate cuts every link to and from name.
func (s *simNet) isolate(name string, on bool) {
	for _, o := range s.order {
		s.cut[[2]string{name, o}] = on
		s.cut[[2]string{o, name}] = on
	}
}

// collect moves each node's outbox into flight and records its views, checking monotonicity.
func (s *simNet) collect() {
	for _, n := range s.order {
		a := s.nodes[n]
		if a == nil {
			continue
		}
		rd := a.Ready()
		for _, v := range rd.Views {
			if h := s.views[n]; len(h) > 0 && h[len(h)-1].Generation >= v.Generation {
				s.t.Fatalf("%s: generation went from %d to %d", n, h[len(h)-1].Generation, v.Generation)
			}
			if v.Members[v.Self].Name != n {
				s.t.Fatalf("%s: Self %d names %s", n, v.Self, v.Members[v.Self].Name)
			}
			s.views[n] = append(s.views[n], v)
		}
		for _, m := range rd.Messages {
			if s.rng.Float64() < s.drop || s.cut[[2]string{m.From.Name, m.To}] {
				continue
			}
			d := 0
			if s.maxDelay > 0 {
				d = s.rng.Intn(s.maxDelay + 1)
			}
			s.flight = append(s.flight, flight{due: s.now + 1 + d, msg: m})
		}
	}
}

// step delivers due messages, ticks every node and collects.
func (s *simNet) step() {
	s.now++
	var keep []flight
	due := s.flight
	s.flight = nil
	for _, f := range due {
		if f.due > s.now {
			keep = append(keep, f)
			continue
		}
		if a := s.nodes[f.msg.To]; a != nil && !s.cut[[2]string{f.msg.From.Name, f.msg.To}] {
			a.Step(f.msg)
		}
	}
	s.flight = append(keep, s.flight...)
	s.collect()
	for _, n := range s.order {
		if a := s.nodes[n]; a != nil {
			a.Tick()
		}
	}
	s.collect()
}

// setMembers gives every listed node the same live set, as converged membership would.
func (s *simNet) setMembers(live []Member, at ...string) {
	for _, n := range at {
		s.nodes[n].SetMembers(live)
	}
	s.collect()
}

// last returns name's newest view.
func (s *simNet) last(name string) (View, bool) {
	h := s.views[name]
	if len(h) == 0 {
		return View{}, false
	}
	return h[len(h)-1], true
}

// agreed reports whether all named nodes' newest views are the same and hold exactly them.
func (s *simNet) agreed(names ...string) bool {
	var first View
	for i, n := range names {
		v, ok := s.last(n)
		if !ok || s.nodes[n].Status().Phase != PhaseAgreed || v.Size() != len(names) {
			return false
		}
		if i == 0 {
			first = v
		} else if v.Generation != first.Generation || !sameMembers(v.Members, first.Members) {
			return false
		}
	}
	return true
}

// run steps until cond or fails after max steps.
func (s *simNet) run(max int, what string, cond func() bool) {
	s.t.Helper()
	for i := 0; i < max; i++ {
		if cond() {
			return
		}
		s.step()
	}
	if !cond() {
		for _, n := range s.order {
			if a := s.nodes[n]; a != nil {
				v, _ := s.last(n)
				s.t.Logf("%s: %v, %v", n, a.Status(), v)
			}
		}
		s.t.Fatalf("not %s after %d steps", what, max)
	}
}

// checkSafety: two views with one generation have the same members, on every node.
func (s *simNet) checkSafety() {
	s.t.Helper()
	byGen := map[uint64]View{}
	for n, h := range s.views {
		for _, v := range h {
			if o, ok := byGen[v.Generation]; ok && !sameMembers(o.Members, v.Members) {
				s.t.Fatalf("generation %d agreed twice: %v and %v (at %s)", v.Generation, o, v, n)
			}
			byGen[v.Generation] = v
		}
	}
}

func TestAgreementThreeNodes(t *testing.T) {
	s := newSimNet(t, 1)
	a, b, c := member("a", "1"), member("b", "1"), member("c", "1")
	for _, m := range []Member{c, a, b} {
		s.add(m, 1, 0)
	}
	live := []Member{c, b, a}
	s.setMembers(live, "a", "b", "c")
	s.run(50, "agreed on 3", func() bool { return s.agreed("a", "b", "c") })
	for i, n := range []string{"a", "b", "c"} {
		v, _ := s.last(n)
		if v.Rank() != i || v.Name(i) != n || v.Members[i].NATSURL != "nats://"+n {
			t.Fatalf("%s: rank %d in %v, want %d", n, v.Rank(), v, i)
		}
	}
	g, _ := s.last("a")

	// c fails: a and b see it gone.
	s.nodes["c"] = nil
	s.setMembers([]Member{a, b}, "a", "b")
	s.run(50, "agreed on 2", func() bool { return s.agreed("a", "b") })
	if v, _ := s.last("a"); v.Generation <= g.Generation {
		t.Fatalf("generation did not grow: %d then %d", g.Generation, v.Generation)
	}
	s.checkSafety()
}

func TestAgreementDropDelaySeeds(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := newSimNet(t, seed)
			s.drop, s.maxDelay = 0.3, 6
			var ms []Member
			var names []string
			for i := 0; i < 5; i++ {
				m := member(fmt.Sprintf("n%d", i), "1")
				ms = append(ms, m)
				names = append(names, m.Name)
				s.add(m, 1, 0)
			}
			// Membership reaches nodes at different times, as gossip does.
			for i, n := range names {
				s.nodes[n].SetMembers(ms[:i+1+s.rng.Intn(len(ms)-i)])
				s.collect()
				s.step()
			}
			s.setMembers(ms, names...)
			s.run(2000, "agreed on 5", func() bool { return s.agreed(names...) })
			// Two fail, noticed at different moments by different survivors.
			s.nodes["n1"], s.nodes["n3"] = nil, nil
			surv := []string{"n0", "n2", "n4"}
			s.nodes["n0"].SetMembers([]Member{ms[0], ms[2], ms[3], ms[4]})
			s.nodes["n2"].SetMembers([]Member{ms[0], ms[1], ms[2], ms[4]})
			s.collect()
			for i := 0; i < 5; i++ {
				s.step()
			}
			s.setMembers([]Member{ms[0], ms[2], ms[4]}, surv...)
			s.run(2000, "agreed on 3", func() bool { return s.agreed(surv...) })
			s.checkSafety()
		})
	}
}

func TestAgreementIsolatedNodeBlocksUntilDeclaredDead(t *testing.T) {
	s := newSimNet(t, 7)
	ms := []Member{member("a", "1"), member("b", "1"), member("c", "1")}
	for _, m := range ms {
		s.add(m, 1, 0)
	}
	s.setMembers(ms, "a", "b", "c")
	s.run(50, "agreed on 3", func() bool { return s.agreed("a", "b", "c") })
	g, _ := s.last("a")

	// c is cut off; a and b see a state change (c still listed) and must not agree without c.
	s.isolate("c", true)
	b2 := ms[1]
	b2.State = StateTraining
	live := []Member{ms[0], b2, ms[2]}
	s.setMembers(live, "a", "b")
	for i := 0; i < 100; i++ {
		s.step()
	}
	if v, _ := s.last("a"); v.Generation != g.Generation {
		t.Fatalf("a agreed %v without c's vote", v)
	}
	if ph := s.nodes["a"].Status().Phase; ph != PhaseAgreed {
		t.Fatalf("a: phase %v; the member set did not change, the view should stand", ph)
	}
	// Membership declares c dead: a and b agree without it.
	s.setMembers([]Member{ms[0], b2}, "a", "b")
	s.run(100, "agreed on 2", func() bool { return s.agreed("a", "b") })

	// c comes back (heals) and is seen again: all three agree a newer view.
	s.isolate("c", false)
	s.setMembers(live, "a", "b", "c")
	s.run(200, "agreed on 3 again", func() bool { return s.agreed("a", "b", "c") })
	s.checkSafety()
}

func TestAgreementMinNodesWaits(t *testing.T) {
	s := newSimNet(t, 3)
	ms := []Member{member("a", "1"), member("b", "1"), member("c", "1")}
	for _, m := range ms {
		s.add(m, 3, 0)
	}
	s.setMembers(ms[:2], "a", "b")
	for i := 0; i < 50; i++ {
		s.step()
	}
	st := s.nodes["a"].Status()
	if st.Phase != PhaseWaiting || len(s.views["a"]) != 0 {
		t.Fatalf("a with 2 of 3: %v, views %v", st, s.views["a"])
	}
	if st.String() != "waiting: 2 of 3 nodes needed are ready" {
		t.Fatalf("status says %q", st)
	}
	s.setMembers(ms, "a", "b", "c")
	s.run(50, "agreed on 3", func() bool { return s.agreed("a", "b", "c") })
	// One leaves: below MinNodes the survivors wait; the view has ended.
	c := ms[2]
	c.State = StateLeaving
	s.setMembers([]Member{ms[0], ms[1], c}, "a", "b", "c")
	s.run(10, "waiting", func() bool {
		return s.nodes["a"].Status().Phase == PhaseWaiting && s.nodes["c"].Status().Phase == PhaseOut
	})
	// c is ready again with the same incarnation: the old view ended, so a new generation.
	g, _ := s.last("a")
	s.setMembers(ms, "a", "b", "c")
	s.run(50, "agreed on 3 again", func() bool { return s.agreed("a", "b", "c") })
	if v, _ := s.last("c"); v.Generation <= g.Generation {
		t.Fatalf("same members came back under the ended generation %d", v.Generation)
	}
}

func TestAgreementMaxNodesSpares(t *testing.T) {
	s := newSimNet(t, 4)
	ms := []Member{member("b", "1"), member("c", "1"), member("d", "1")}
	for _, m := range ms {
		s.add(m, 1, 3)
	}
	s.setMembers(ms, "b", "c", "d")
	s.run(50, "agreed on b c d", func() bool { return s.agreed("b", "c", "d") })
	g, _ := s.last("b")

	// a sorts first but arrives last: it waits as a spare, the running view stands.
	a := member("a", "1")
	s.add(a, 1, 3)
	all := append([]Member{a}, ms...)
	s.setMembers(all, "a", "b", "c", "d")
	s.run(50, "a spare", func() bool { return s.nodes["a"].Status().Phase == PhaseSpare })
	for i := 0; i < 30; i++ {
		s.step()
	}
	if v, _ := s.last("b"); v.Generation != g.Generation || len(s.views["a"]) != 0 {
		t.Fatalf("a spare changed the view: %v; a's views %v", v, s.views["a"])
	}
	// c fails: the spare takes a rank.
	s.nodes["c"] = nil
	s.setMembers([]Member{a, ms[0], ms[2]}, "a", "b", "d")
	s.run(100, "agreed on a b d", func() bool { return s.agreed("a", "b", "d") })
	s.checkSafety()
}

func TestAgreementRestartedNodeIsNewMember(t *testing.T) {
	s := newSimNet(t, 5)
	ms := []Member{member("a", "1"), member("b", "1"), member("c", "1")}
	for _, m := range ms {
		s.add(m, 1, 0)
	}
	s.setMembers(ms, "a", "b", "c")
	s.run(50, "agreed on 3", func() bool { return s.agreed("a", "b", "c") })
	// c crashes and restarts as a new incarnation before the others notice.
	c2 := member("c", "2")
	s.add(c2, 1, 0)
	s.setMembers([]Member{ms[0], ms[1], c2}, "a", "b", "c")
	s.run(100, "agreed with c/2", func() bool { return s.agreed("a", "b", "c") })
	v, _ := s.last("a")
	if v.Members[2].ID != "2" {
		t.Fatalf("view kept the old incarnation: %+v", v.Members[2])
	}
	s.checkSafety()
}

func TestMsgTypeString(t *testing.T) {
	for typ, want := range map[MsgType]string{MsgPropose: "propose", MsgAck: "ack", MsgCommit: "commit", 9: "MsgType(9)"} {
		if typ.String() != want {
			t.Errorf("%d: %q, want %q", typ, typ.String(), want)
		}
	}
}
