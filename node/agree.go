package node

import (
	"fmt"
	"sort"
)

// MsgType says what a view Message means.
type MsgType uint8

const (
	// MsgPropose: From votes for (Gen, Members) and asks the receiver for its vote. A receiver
	// that holds the same vote answers with MsgAck (or MsgCommit once agreed).
	MsgPropose MsgType = iota + 1
	// MsgAck: From votes for (Gen, Members).
	MsgAck
	// MsgCommit: every one of Members voted for (Gen, Members); From installed it as its view.
	MsgCommit
)

func (t MsgType) String() string {
	switch t {
	case MsgPropose:
		return "propose"
	case MsgAck:
		return "ack"
	case MsgCommit:
		return "commit"
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is the one message of the view agreement.
type Message struct {
	Type    MsgType  `json:"type"`
	From    Member   `json:"from"`
	To      string   `json:"to"` // node name
	Gen     uint64   `json:"gen"`
	Members []Member `json:"members"` // sorted by name
}

func (m Message) String() string {
	names := make([]string, len(m.Members))
	for i, x := range m.Members {
		names[i] = x.Name
	}
	return fmt.Sprintf("%s %s->%s gen %d %v", m.Type, m.From.Name, m.To, m.Gen, names)
}

// Phase is where a node stands in the view agreement.
type Phase uint8

const (
	// PhaseOut: this node is not eligible (joining or leaving) and takes no rank.
	PhaseOut Phase = iota
	// PhaseWaiting: fewer than MinNodes eligible nodes; no view until more arrive.
	PhaseWaiting
	// PhaseSpare: more than MaxNodes eligible nodes and this one is not among those chosen.
	PhaseSpare
	// PhaseProposing: membership changed; a new view is being agreed. The last view has ended.
	PhaseProposing
	// PhaseAgreed: the last emitted view is current.
	PhaseAgreed
)

var phaseNames = [...]string{"out", "waiting", "spare", "proposing", "agreed"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Status is a snapshot of a node's agreement state.
type Status struct {
	Phase      Phase
	Eligible   int    // ready or training nodes this node sees, itself included
	MinNodes   int    // from the config, to say how many are missing
	MaxNodes   int    // 0: no limit
	Generation uint64 // of the last agreed view; 0 before the first
	Voting     uint64 // generation this node currently votes for; 0 when none
}

func (s Status) String() string {
	switch s.Phase {
	case PhaseWaiting:
		return fmt.Sprintf("waiting: %d of %d nodes needed are ready", s.Eligible, s.MinNodes)
	case PhaseSpare:
		return fmt.Sprintf("spare: %d nodes ready, at most %d take ranks", s.Eligible, s.MaxNodes)
	case PhaseProposing:
		return fmt.Sprintf("proposing view %d (last agreed %d)", s.Voting, s.Generation)
	case PhaseAgreed:
		return fmt.Sprintf("agreed view %d", s.Generation)
	}
	return "out: not ready or leaving"
}

// Ready is what the Agreement asks its driver to do: send Messages, hand Views to the trainer.
type Ready struct {
	Messages []Message
	Views    []View // newly agreed, oldest first
}

// ballot is a vote: a generation and its sorted member list.
type ballot struct {
	gen     uint64
	members []Member
}

func (b ballot) is(o ballot) bool { return b.gen == o.gen && sameMembers(b.members, o.members) }

// Agreement agrees views among the live members. It does no I/O and keeps no clock: feed it
// the live set (SetMembers), peers' messages (Step) and ticks (Tick), then drain Ready.
// Not safe for concurrent use; one goroutine drives it.
//
// Rules: on every change of the chosen member set a node votes for (seen+1, set), where seen
// is the highest generation it has heard of. A node adopts a peer's vote of a higher
// generation when the set equals its own choice. A node votes at most once per generation, so
// a (generation, set) voted by all its members is the same on every member: the view.
type Agreement struct {
	self       Member
	minNodes   int
	maxNodes   int
	retryTicks int

	live     []Member // last SetMembers, sorted by name
	eligible int
	desired  []Member // the set this node wants agreed; nil when it takes no rank
	phase    Phase

	seen      uint64            // highest generation heard of
	vote      ballot            // current vote; gen 0: none
	votes     map[string]ballot // latest vote heard per member incarnation
	committed ballot            // last view this node installed
	known     ballot            // newest agreed view heard of, this node in it or not

	ticks    int
	lastSend int

	out   []Message
	views []View
}

// NewAgreement starts the agreement for self. minNodes >= 1; maxNodes 0 means no limit;
// retryTicks is how many ticks a vote waits before it is sent again.
func NewAgreement(self Member, minNodes, maxNodes, retryTicks int) *Agreement {
	if minNodes < 1 {
		minNodes = 1
	}
	if retryTicks < 1 {
		retryTicks = 1
	}
	return &Agreement{
		self: self, minNodes: minNodes, maxNodes: maxNodes, retryTicks: retryTicks,
		votes: map[string]ballot{},
	}
}

// SetMembers gives the live members as membership sees them, this node included (with its
// current State). Call it on every join, leave, failure or state change.
func (a *Agreement) SetMembers(live []Member) {
	a.live = append([]Member(nil), live...)
	sortByName(a.live)
	if i := indexOf(a.live, a.self); i >= 0 {
		a.self = a.live[i]
	} else {
		a.self.State = StateLeaving
	}
	a.update()
}

// Step feeds one message from a peer.
func (a *Agreement) Step(m Message) {
	if m.Gen > a.seen {
		a.seen = m.Gen
	}
	b := ballot{m.Gen, m.Members}
	switch m.Type {
	case MsgPropose, MsgAck:
		a.record(m.From, b)
		switch {
		case a.vote.gen > 0 && b.is(a.vote):
			if a.committed.is(a.vote) {
				a.send(m.From.Name, MsgCommit, a.committed)
				return
			}
			if m.Type == MsgPropose {
				a.send(m.From.Name, MsgAck, a.vote)
			}
			a.maybeCommit()
		case a.desired != nil && m.Gen > a.vote.gen && sameMembers(m.Members, a.desired):
			a.vote = b
			a.record(a.self, b)
			a.phase = PhaseProposing
			a.sendAll(MsgAck, b, b.members)
			a.maybeCommit()
		case m.Type == MsgPropose && (m.Gen <= a.vote.gen || m.Gen <= a.known.gen):
			// A stale or disagreeing proposer (restarted, cut off, or a would-be spare): tell it
			// where we are. Only proposals get this answer, so two peers cannot ping-pong.
			if a.known.gen > 0 {
				a.send(m.From.Name, MsgCommit, a.known)
			}
			if a.vote.gen > 0 && !a.vote.is(a.known) {
				a.send(m.From.Name, MsgAck, a.vote)
			}
		}
	case MsgCommit:
		for _, x := range m.Members {
			a.record(x, b)
		}
		if m.Gen > a.known.gen {
			a.known = b
			a.update() // the spare choice depends on the newest agreed view
		}
		a.maybeCommit()
	}
}

// Tick advances the agreement's clock by one tick: unanswered votes are sent again.
func (a *Agreement) Tick() {
	a.ticks++
	if a.phase != PhaseProposing || a.vote.gen == 0 || a.ticks-a.lastSend < a.retryTicks {
		return
	}
	var missing []Member
	for _, x := range a.vote.members {
		if v, ok := a.votes[x.key()]; !ok || !v.is(a.vote) {
			missing = append(missing, x)
		}
	}
	a.sendAll(MsgPropose, a.vote, missing)
}

// Ready drains the messages to send and the views agreed since the last call.
func (a *Agreement) Ready() Ready {
	r := Ready{Messages: a.out, Views: a.views}
	a.out, a.views = nil, nil
	return r
}

// Status reports the phase and generations.
func (a *Agreement) Status() Status {
	return Status{Phase: a.phase, Eligible: a.eligible, MinNodes: a.minNodes, MaxNodes: a.maxNodes,
		Generation: a.committed.gen, Voting: a.vote.gen}
}

// choose picks the member set this node wants agreed, or nil and the reason it takes no rank.
func (a *Agreement) choose() ([]Member, Phase) {
	var elig []Member
	for _, m := range a.live {
		if m.State.eligible() {
			elig = append(elig, m)
		}
	}
	a.eligible = len(elig)
	if !a.self.State.eligible() || indexOf(elig, a.self) < 0 {
		return nil, PhaseOut
	}
	if len(elig) < a.minNodes {
		return nil, PhaseWaiting
	}
	if a.maxNodes > 0 && len(elig) > a.maxNodes {
		// Members of the newest agreed view keep their places; newcomers fill by name.
		var keep, rest []Member
		for _, m := range elig {
			if indexOf(a.known.members, m) >= 0 {
				keep = append(keep, m)
			} else {
				rest = append(rest, m)
			}
		}
		pick := append(keep, rest...)[:a.maxNodes]
		sortByName(pick)
		if indexOf(pick, a.self) < 0 {
			return nil, PhaseSpare
		}
		elig = pick
	}
	return elig, PhaseProposing
}

// update recomputes the wanted set and proposes when it changed.
func (a *Agreement) update() {
	d, ph := a.choose()
	a.desired = d
	if d == nil {
		// The current view (if any) has ended; a return needs a new generation.
		a.phase, a.vote = ph, ballot{}
		return
	}
	if a.vote.gen > 0 && sameMembers(a.vote.members, d) {
		return // already voting for (or agreed on) this set
	}
	a.seen++
	a.vote = ballot{a.seen, d}
	a.record(a.self, a.vote)
	a.phase = PhaseProposing
	a.sendAll(MsgPropose, a.vote, d)
	a.maybeCommit()
}

// record keeps the newest vote heard from member x.
func (a *Agreement) record(x Member, b ballot) {
	k := x.key()
	if prev, ok := a.votes[k]; !ok || b.gen >= prev.gen {
		a.votes[k] = b
	}
}

// maybeCommit installs the current vote once every member holds it.
func (a *Agreement) maybeCommit() {
	if a.vote.gen == 0 || a.committed.gen >= a.vote.gen {
		return
	}
	for _, x := range a.vote.members {
		if v, ok := a.votes[x.key()]; !ok || !v.is(a.vote) {
			return
		}
	}
	a.committed = a.vote
	if a.vote.gen > a.known.gen {
		a.known = a.vote
	}
	a.phase = PhaseAgreed
	a.views = append(a.views, View{
		Generation: a.vote.gen,
		Members:    append([]Member(nil), a.vote.members...),
		Self:       indexOf(a.vote.members, a.self),
	})
	// Everyone live hears of it: laggards that missed an ack, and spares choosing their place.
	a.sendAll(MsgCommit, a.committed, a.live)
}

func (a *Agreement) send(to string, t MsgType, b ballot) {
	a.out = append(a.out, Message{Type: t, From: a.self, To: to, Gen: b.gen, Members: b.members})
}

func (a *Agreement) sendAll(t MsgType, b ballot, to []Member) {
	for _, x := range to {
		if x.Name != a.self.Name {
			a.send(x.Name, t, b)
		}
	}
	a.lastSend = a.ticks
}

func sortByName(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
}
