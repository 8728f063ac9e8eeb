package node

import (
	"fmt"
	"strings"
)

// State is what a node announces about itself in its memberlist metadata.
type State uint8

const (
	// StateJoining: started, not yet ready to be given a rank (loading data, joining).
	StateJoining State = iota
	// StateReady: may be placed in a view.
	StateReady
	// StateTraining: in a view and training; may stay in views like StateReady.
	StateTraining
	// StateLeaving: going away; the others agree a view without it.
	StateLeaving
)

var stateNames = [...]string{"joining", "ready", "training", "leaving"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// eligible says whether a node in state s may hold a rank.
func (s State) eligible() bool { return s == StateReady || s == StateTraining }

// Member is one node as the cluster sees it.
type Member struct {
	Name    string `json:"name"`     // unique node name; ranks are ordered by it
	ID      string `json:"id"`       // new at each process start, so a restarted node is a new member
	NATSURL string `json:"nats_url"` // where the node's NATS server or client is reachable
	Addr    string `json:"addr"`     // memberlist host:port
	Route   string `json:"route"`    // its NATS server's route listener host:port; empty without one
	State   State  `json:"state"`
}

// same says whether a and b are the same incarnation of the same node.
func (m Member) same(o Member) bool { return m.Name == o.Name && m.ID == o.ID }

func (m Member) key() string { return m.Name + "/" + m.ID }

// View is an agreed membership: every member acknowledged the same Generation and Members.
// Members are sorted by Name; a member's rank is its index. Self is this node's rank.
type View struct {
	Generation uint64
	Members    []Member
	Self       int
}

// Rank is this node's index in Members.
func (v View) Rank() int { return v.Self }

// Size is the number of ranks.
func (v View) Size() int { return len(v.Members) }

// Name is the name of rank r, used to build per-rank subjects.
func (v View) Name(r int) string { return v.Members[r].Name }

// Names lists the members' names in rank order.
func (v View) Names() []string {
	out := make([]string, len(v.Members))
	for i, m := range v.Members {
		out[i] = m.Name
	}
	return out
}

func (v View) String() string {
	return fmt.Sprintf("view{gen %d, rank %d of [%s]}", v.Generation, v.Self, strings.Join(v.Names(), " "))
}

// sameMembers says whether a and b hold the same incarnations in the same order.
func sameMembers(a, b []Member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].same(b[i]) {
			return false
		}
	}
	return true
}

func indexOf(ms []Member, m Member) int {
	for i := range ms {
		if ms[i].same(m) {
			return i
		}
	}
	return -1
}
