package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// peerQueue is how many view messages may wait for one peer; more are dropped (votes are
// re-sent on ticks, so a drop delays, never breaks, the agreement).
const peerQueue = 64

// Node is one member of the cluster: memberlist membership plus the view agreement.
// Its methods are safe for concurrent use.
type Node struct {
	cfg  Config
	log  zerolog.Logger
	self Member
	ml   *memberlist.Memberlist

	mu      sync.Mutex
	state   State
	byName  map[string]*memberlist.Node // live nodes, private copies (see track)
	status  Status
	current View
	hasView bool
	moved   chan struct{} // closed and replaced when status or view changes

	metrics  atomic.Pointer[Metrics]
	core     *Agreement // owned by loop
	seeds    []string   // owned by loop after Join
	lastJoin time.Time  // owned by loop
	joining  atomic.Bool
	seedsIn  chan []string
	peers    map[string]*sender // guarded by mu
	changed  chan struct{}
	inbox    chan Message
	views    chan View

	quit     chan struct{}
	shutOnce sync.Once
	wg       sync.WaitGroup
}

// meta is what a node announces in memberlist (limit 512 bytes).
type meta struct {
	ID    string `json:"id"`
	NATS  string `json:"nats,omitempty"`
	Route string `json:"route,omitempty"`
	State State  `json:"state"`
}

// New starts memberlist for cfg (listening, alone) in StateJoining. Call Join next.
func New(cfg Config, logger zerolog.Logger) (*Node, error) {
	if len(cfg.GossipKey) == 0 {
		k, err := LoadGossipKey(cfg.GossipKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.GossipKey = k
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		log:     logger,
		self:    Member{Name: cfg.Name, ID: newID(), NATSURL: cfg.NATSURL, State: StateJoining},
		state:   StateJoining,
		byName:  map[string]*memberlist.Node{},
		peers:   map[string]*sender{},
		changed: make(chan struct{}, 1),
		inbox:   make(chan Message, 1024),
		seedsIn: make(chan []string, 1),
		views:   make(chan View, 1),
		moved:   make(chan struct{}),
		quit:    make(chan struct{}),
	}
	n.core = NewAgreement(n.self, cfg.MinNodes, cfg.MaxNodes, cfg.RetryTicks)

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = cfg.BindAddr, cfg.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.AdvertiseAddr, cfg.AdvertisePort
	mc.ProbeInterval, mc.ProbeTimeout = cfg.ProbeInterval, cfg.ProbeTimeout
	mc.IndirectChecks = cfg.IndirectChecks
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = cfg.SuspicionMult, cfg.SuspicionMaxTimeoutMult
	mc.AwarenessMaxMultiplier = cfg.AwarenessMaxMultiplier
	mc.GossipInterval, mc.GossipNodes = cfg.GossipInterval, cfg.GossipNodes
	mc.GossipToTheDeadTime = 4 * cfg.ProbeInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	mc.SecretKey = cfg.GossipKey
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = delegate{n}
	mc.Events = delegate{n}
	mc.LogOutput = memberlistLog{logger.With().Str("component", "memberlist").Logger()}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("node: start memberlist on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	n.ml = ml
	n.mu.Lock()
	n.self.Addr = ml.LocalNode().Address()
	if cfg.NATSPort > 0 {
		n.self.NATSURL = "nats://" + net.JoinHostPort(ml.LocalNode().Addr.String(), strconv.Itoa(cfg.NATSPort))
	}
	if cfg.RoutePort > 0 {
		// NATS routes go to the address the other nodes reach this one at.
		n.self.Route = net.JoinHostPort(ml.LocalNode().Addr.String(), strconv.Itoa(cfg.RoutePort))
	}
	n.mu.Unlock()
	if cfg.RoutePort > 0 || cfg.NATSPort > 0 {
		// The address is only known now: announce it before the first contact.
		if err := ml.UpdateNode(cfg.TCPTimeout); err != nil {
			ml.Shutdown()
			return nil, fmt.Errorf("node: announce the NATS route address: %w", err)
		}
	}
	n.log.Info().Str("addr", n.self.Addr).Str("id", n.self.ID).Msg("memberlist listening")
	n.signal()
	n.wg.Add(1)
	go n.loop()
	return n, nil
}

// Addr is the host:port other nodes use as a seed to join this one.
func (n *Node) Addr() string { return n.self.Addr }

// ID is this process's incarnation ID.
func (n *Node) ID() string { return n.self.ID }

// Join contacts the seeds (host:port; Config.Seeds when nil) and, on success, announces
// StateReady so the node may take a rank. With no seeds (or only its own address) the node
// starts a cluster of its own. ErrJoin when no seed answered (down, or holding another gossip
// key); the caller may retry.
func (n *Node) Join(seeds []string) error {
	if err := n.Contact(seeds); err != nil {
		return err
	}
	return n.SetState(StateReady)
}

// Contact joins the seeds' membership like Join but leaves this node in StateJoining: peers
// see it, it takes no rank. SetState(StateReady) makes it eligible once it is ready.
func (n *Node) Contact(seeds []string) error {
	if seeds == nil {
		seeds = n.cfg.Seeds
	}
	var others []string
	for _, s := range seeds {
		if s != n.self.Addr {
			others = append(others, s)
		}
	}
	seeds = others
	if len(seeds) > 0 {
		got, err := n.ml.Join(seeds)
		if got == 0 {
			return fmt.Errorf("%w: seeds %v: %v", ErrJoin, seeds, err)
		}
		n.log.Info().Int("contacted", got).Strs("seeds", seeds).Msg("joined")
		select {
		case n.seedsIn <- append([]string(nil), seeds...):
		default:
		}
	}
	return nil
}

// SetState announces s in this node's metadata. StateReady and StateTraining make the node
// eligible for a rank; StateJoining and StateLeaving take it out of the next view.
func (n *Node) SetState(s State) error {
	n.mu.Lock()
	n.state = s
	n.mu.Unlock()
	select {
	case <-n.quit:
		return ErrClosed
	default:
	}
	err := n.ml.UpdateNode(n.cfg.TCPTimeout)
	n.signal()
	if err != nil {
		return fmt.Errorf("node: announce state %v: %w", s, err)
	}
	return nil
}

// Leave announces StateLeaving and tells the cluster this node is going; call Shutdown after.
func (n *Node) Leave() error {
	if err := n.SetState(StateLeaving); err != nil {
		return err
	}
	if err := n.ml.Leave(n.cfg.LeaveTimeout); err != nil {
		return fmt.Errorf("node: leave: %w", err)
	}
	return nil
}

// Shutdown stops the node without telling anyone (peers notice it as a failure unless Leave
// ran first) and closes the Views channel. Safe to call twice.
func (n *Node) Shutdown() error {
	var err error
	n.shutOnce.Do(func() {
		close(n.quit)
		n.wg.Wait()
		err = n.ml.Shutdown()
		close(n.views)
	})
	return err
}

// Views delivers each agreed view. The channel holds only the newest undelivered view: a
// reader that falls behind skips views that were already replaced (a view is a snapshot;
// training always restarts on the newest). Closed by Shutdown.
func (n *Node) Views() <-chan View { return n.views }

// View returns the newest agreed view and whether it is still current (Status().Phase is
// PhaseAgreed); a view that ended is returned with false.
func (n *Node) View() (View, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.current, n.hasView && n.status.Phase == PhaseAgreed
}

// closed says whether Shutdown ran.
func (n *Node) closed() bool {
	select {
	case <-n.quit:
		return true
	default:
		return false
	}
}

// WaitChange blocks until cond holds, testing it now and after every change of the status or
// the view, and reports whether it held (false: ctx ended or the node shut down first). cond
// runs on the caller's goroutine and may call View and Status.
func (n *Node) WaitChange(ctx context.Context, cond func() bool) bool {
	for {
		n.mu.Lock()
		moved := n.moved
		n.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return false
		case <-n.quit:
			return false
		}
	}
}

// Status says where the agreement stands (waiting for nodes, spare, proposing, agreed).
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}

// SetMetrics makes the node report its views (members, generation, rank) to m.
func (n *Node) SetMetrics(m *Metrics) { n.metrics.Store(m) }

// RouteAddrs are the NATS route listeners (host:port) that the other live members announce,
// sorted: the routes this node's server should dial.
func (n *Node) RouteAddrs() []string {
	var out []string
	for _, m := range n.readMembers() {
		if m.Route != "" && !m.same(n.self) {
			out = append(out, m.Route)
		}
	}
	sort.Strings(out)
	return out
}

// Members lists the live members as memberlist sees them now, sorted by name.
func (n *Node) Members() []Member {
	ms := n.readMembers()
	sortByName(ms)
	return ms
}

func (n *Node) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// readMembers decodes the live nodes recorded by the event callbacks; this node's State is
// taken from n.state.
func (n *Node) readMembers() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Member, 0, len(n.byName))
	for _, x := range n.byName {
		var md meta
		if err := json.Unmarshal(x.Meta, &md); err != nil {
			n.log.Warn().Str("peer", x.Name).Err(err).Msg("unreadable node metadata; ignoring peer")
			continue
		}
		m := Member{Name: x.Name, ID: md.ID, NATSURL: md.NATS, Route: md.Route, Addr: x.Address(), State: md.State}
		if m.same(n.self) {
			m.State = n.state
		}
		out = append(out, m)
	}
	return out
}

// track keeps a private copy of a live node: memberlist updates its own records in place,
// so the pointers Members() returns cannot be read without racing.
func (n *Node) track(x *memberlist.Node, live bool) {
	n.mu.Lock()
	if live {
		c := *x
		c.Addr = append([]byte(nil), x.Addr...)
		c.Meta = append([]byte(nil), x.Meta...)
		n.byName[x.Name] = &c
	} else {
		delete(n.byName, x.Name)
	}
	n.mu.Unlock()
	n.signal()
}

func (n *Node) loop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.quit:
			return
		case <-n.changed:
			n.core.SetMembers(n.readMembers())
			n.dropSenders()
		case m := <-n.inbox:
			n.core.Step(m)
		case s := <-n.seedsIn:
			n.seeds, n.lastJoin = s, time.Now()
		case <-t.C:
			n.core.Tick()
			n.maybeRejoin()
		}
		n.flush()
	}
}

// maybeRejoin contacts the seeds again while this node waits for a view. A node restarted on
// a new address is refused ("conflicting address") until its old entry is DeadNodeReclaimTime
// dead; a fresh push/pull after that gets it accepted without waiting for PushPullInterval.
func (n *Node) maybeRejoin() {
	ph := n.core.Status().Phase
	every := n.cfg.DeadNodeReclaimTime + n.cfg.ProbeInterval
	if len(n.seeds) == 0 || (ph != PhaseWaiting && ph != PhaseProposing) || time.Since(n.lastJoin) < every {
		return
	}
	if !n.joining.CompareAndSwap(false, true) {
		return
	}
	n.lastJoin = time.Now()
	seeds := n.seeds
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.joining.Store(false)
		if _, err := n.ml.Join(seeds); err != nil {
			n.log.Debug().Err(err).Msg("rejoin")
		}
	}()
}

// flush carries out what the agreement asked for.
func (n *Node) flush() {
	rd := n.core.Ready()
	for _, m := range rd.Messages {
		b, err := json.Marshal(m)
		if err != nil {
			n.log.Error().Err(err).Msg("encode view message")
			continue
		}
		select {
		case n.peer(m.To) <- b:
		default: // peer is slow or dead; the agreement re-sends on ticks
		}
	}
	st := n.core.Status()
	// Metrics first, so whoever sees the view through View() also sees it in the metrics.
	if m := n.metrics.Load(); m != nil {
		for _, v := range rd.Views {
			m.SetView(v)
		}
		if st.Phase != PhaseAgreed {
			m.ViewEnded()
		}
	}
	n.mu.Lock()
	prev := n.status
	n.status = st
	if len(rd.Views) > 0 {
		n.current, n.hasView = rd.Views[len(rd.Views)-1], true
	}
	if st != prev || len(rd.Views) > 0 {
		close(n.moved)
		n.moved = make(chan struct{})
	}
	n.mu.Unlock()
	if st.Phase != prev.Phase {
		n.log.Info().Str("phase", st.Phase.String()).Uint64("generation", st.Generation).Msg(st.String())
	}
	for _, v := range rd.Views {
		n.log.Info().Uint64("generation", v.Generation).Int("rank", v.Rank()).Int("size", v.Size()).
			Strs("members", v.Names()).Msg("view agreed")
		select { // keep only the newest: drop an unread older view first
		case <-n.views:
		default:
		}
		n.views <- v
	}
}

// sender is the queue and goroutine that send view messages to one peer.
type sender struct {
	ch   chan []byte
	stop chan struct{}
}

// peer returns the send queue of a peer, starting its sender on first use. One goroutine per
// peer keeps a dead peer's TCP timeouts from delaying messages to the others.
func (n *Node) peer(name string) chan []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.peers[name]; ok {
		return s.ch
	}
	s := &sender{ch: make(chan []byte, peerQueue), stop: make(chan struct{})}
	n.peers[name] = s
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.quit:
				return
			case <-s.stop:
				return
			case b := <-s.ch:
				n.mu.Lock()
				to := n.byName[name]
				n.mu.Unlock()
				if to == nil {
					continue
				}
				if err := n.ml.SendReliable(to, b); err != nil {
					n.log.Debug().Str("peer", name).Err(err).Msg("view message not sent")
				}
			}
		}
	}()
	return s.ch
}

// dropSenders stops the senders of peers that are no longer members: names are new at each
// process start (hostname-pid), so a cluster with churn would otherwise gather them forever.
func (n *Node) dropSenders() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, s := range n.peers {
		if _, live := n.byName[name]; !live {
			close(s.stop)
			delete(n.peers, name)
		}
	}
}

// senders is how many peer senders run.
func (n *Node) senders() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.peers)
}

// delegate adapts Node to memberlist's Delegate and EventDelegate. memberlist calls these
// from its own goroutines, some with its locks held: they only copy and signal.
type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	d.n.mu.Lock()
	md := meta{ID: d.n.self.ID, NATS: d.n.self.NATSURL, Route: d.n.self.Route, State: d.n.state}
	d.n.mu.Unlock()
	b, _ := json.Marshal(md)
	if len(b) > limit {
		md.NATS = "" // too long to announce; peers see no URL rather than no node
		b, _ = json.Marshal(md)
	}
	return b
}

func (d delegate) NotifyMsg(b []byte) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		d.n.log.Warn().Err(err).Msg("unreadable view message")
		return
	}
	select {
	case d.n.inbox <- m:
	default:
		d.n.log.Warn().Msg("view inbox full; message dropped")
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) LocalState(join bool) []byte                { return nil }
func (d delegate) MergeRemoteState(buf []byte, join bool)     {}
func (d delegate) NotifyJoin(x *memberlist.Node)              { d.n.track(x, true) }
func (d delegate) NotifyLeave(x *memberlist.Node)             { d.n.track(x, false) }
func (d delegate) NotifyUpdate(x *memberlist.Node)            { d.n.track(x, true) }

// memberlistLog turns memberlist's "[LEVEL] memberlist: text" lines into zerolog events.
type memberlistLog struct{ log zerolog.Logger }

func (w memberlistLog) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	lvl := zerolog.DebugLevel
	for tag, l := range map[string]zerolog.Level{"[ERR]": zerolog.ErrorLevel, "[WARN]": zerolog.WarnLevel, "[INFO]": zerolog.InfoLevel} {
		if i := bytes.Index(line, []byte(tag)); i >= 0 {
			lvl = l
			line = bytes.TrimSpace(line[i+len(tag):])
			break
		}
	}
	if i := bytes.Index(line, []byte("[DEBUG]")); i >= 0 {
		line = bytes.TrimSpace(line[i+len("[DEBUG]"):])
	}
	w.log.WithLevel(lvl).Msg(string(line))
	return len(p), nil
}
