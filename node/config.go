package node

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// GossipKeyEnv names the environment variable holding the base64 gossip key.
const GossipKeyEnv = "WKD_GOSSIP_KEY"

// Config configures a Node. Build it from DefaultLocalConfig or DefaultClusterConfig and change
// what differs; Validate says what is wrong.
type Config struct {
	// Name is this node's unique name in the cluster; ranks are ordered by it. A restarted node
	// may reuse its name (it gets a new ID). Defaults to the host name.
	Name string

	// BindAddr and BindPort are where memberlist listens (UDP and TCP). Port 0 picks a free
	// port, which is what tests want; a cluster wants a fixed port its seeds can name.
	BindAddr string
	BindPort int

	// AdvertiseAddr and AdvertisePort are what other nodes dial, when they differ from the bind
	// address (NAT, containers). Empty/0: derived from the bind address.
	AdvertiseAddr string
	AdvertisePort int

	// Seeds are host:port addresses of nodes to join when Join is given none. One live seed
	// is enough; list several so a seed's restart does not stop joins. Empty: start alone.
	Seeds []string

	// NATSURL is the NATS URL this node announces in its metadata (for example the URL of its
	// embedded server), so peers and collectors can find it. May be empty.
	NATSURL string

	// NATSPort, if set, is the client port of this node's embedded NATS server: the node then
	// announces nats://<its advertised address>:NATSPort as its NATS URL instead of NATSURL.
	NATSPort int

	// RoutePort is the port of this node's embedded NATS server's route listener, announced
	// with the node's advertised address so the other nodes' servers route to it. 0: the
	// node has no server of its own (it uses an external NATS).
	RoutePort int

	// GossipKey encrypts and authenticates all gossip and view messages: 16, 24 or 32 bytes
	// (AES-128/192/256). Every node needs the same key; a node with another key cannot join.
	// When empty, New reads GossipKeyFile, then the WKD_GOSSIP_KEY environment variable.
	GossipKey []byte
	// GossipKeyFile holds the key, base64 encoded (whitespace ignored).
	GossipKeyFile string

	// ProbeInterval is how often a node probes one random peer. Crash detection takes about
	// one to two ProbeIntervals plus the suspicion timeout. Shorter finds crashes sooner and
	// costs more packets; below the longest GC or scheduling pause it raises false alarms.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before asking IndirectChecks
	// peers to probe too. Must exceed the network's round trip, and be below ProbeInterval.
	ProbeTimeout time.Duration
	// IndirectChecks is how many peers probe a silent node on our behalf. More tolerates lossy
	// links, at more packets.
	IndirectChecks int
	// SuspicionMult scales the suspicion timeout: a suspected node is declared dead after
	// SuspicionMult * max(1, log10(N)) * ProbeInterval unless it refutes. Lower declares
	// death sooner; too low kills nodes that were only slow.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds how far the suspicion timeout starts above its minimum
	// before independent confirmations shrink it (large clusters). 1 disables the stretch.
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier lets a node that is itself slow (missed acks) stretch its probe
	// interval up to this factor, so an overloaded node accuses others less. 1 disables it.
	AwarenessMaxMultiplier int
	// GossipInterval is how often state changes are gossiped to GossipNodes random peers.
	// Shorter spreads a death or state change faster, at more packets.
	GossipInterval time.Duration
	// GossipNodes is how many peers each gossip round reaches.
	GossipNodes int
	// PushPullInterval is how often a full state exchange runs with one peer; it heals what
	// gossip missed. 0 disables it. Each exchange costs a TCP connection.
	PushPullInterval time.Duration
	// TCPTimeout bounds a TCP connect for push/pull, joins and view messages. Longer tolerates
	// slow links; shorter stops a dead peer from holding a sender.
	TCPTimeout time.Duration
	// DeadNodeReclaimTime is how long after its death a node's name may come back from another
	// address (a restarted process on a new port). Shorter lets restarts rejoin sooner; 0
	// makes a restarted node with a new address wait until the dead entry is forgotten.
	DeadNodeReclaimTime time.Duration

	// MinNodes is how many ready nodes a view needs; below it nodes wait (Status says so).
	// Set it above half the cluster size to forbid two views in a network partition.
	MinNodes int
	// MaxNodes caps a view's size; extra ready nodes wait as spares and take a rank when a
	// member leaves. 0: no cap.
	MaxNodes int
	// TickInterval is the clock of the view agreement. Shorter agrees faster after a lost
	// message, at more wakeups.
	TickInterval time.Duration
	// RetryTicks is how many ticks an unanswered vote waits before it is sent again.
	RetryTicks int
	// LeaveTimeout bounds how long Leave waits for its departure to be gossiped.
	LeaveTimeout time.Duration
}

// baseConfig holds what both presets share.
func baseConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Name:                    host,
		BindAddr:                "0.0.0.0",
		BindPort:                7946,
		IndirectChecks:          3,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 3,
		AwarenessMaxMultiplier:  4,
		GossipNodes:             3,
		PushPullInterval:        10 * time.Second,
		MinNodes:                1,
		TickInterval:            50 * time.Millisecond,
		RetryTicks:              4,
		LeaveTimeout:            time.Second,
	}
}

// DefaultClusterConfig is for a LAN: a crash is noticed in about 1 s (200 ms probes, 100 ms
// probe timeout, suspicion 2 * 200 ms, gossip every 50 ms).
func DefaultClusterConfig() Config {
	c := baseConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.TCPTimeout = 2 * time.Second
	c.DeadNodeReclaimTime = 2 * time.Second
	return c
}

// DefaultLocalConfig is for nodes on one machine over loopback (tests, a one-box run): bound
// to 127.0.0.1 on a free port, with the same ~1 s crash detection and shorter TCP timeouts.
func DefaultLocalConfig() Config {
	c := baseConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 30 * time.Millisecond
	c.TCPTimeout = 500 * time.Millisecond
	c.DeadNodeReclaimTime = 500 * time.Millisecond
	c.PushPullInterval = 5 * time.Second
	return c
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Name == "":
		return bad("Name is empty: give each node a unique name")
	case strings.ContainsAny(c.Name, " .*>\t\n"):
		return bad("Name %q has a space, '.', '*' or '>': it is used in NATS subjects", c.Name)
	case c.BindPort < 0 || c.BindPort > 65535:
		return bad("BindPort %d is not in 0..65535", c.BindPort)
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return bad("AdvertisePort %d is not in 0..65535", c.AdvertisePort)
	case c.ProbeInterval <= 0:
		return bad("ProbeInterval %v must be positive", c.ProbeInterval)
	case c.ProbeTimeout <= 0 || c.ProbeTimeout >= c.ProbeInterval:
		return bad("ProbeTimeout %v must be positive and below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	case c.IndirectChecks < 0:
		return bad("IndirectChecks %d is negative", c.IndirectChecks)
	case c.SuspicionMult < 1:
		return bad("SuspicionMult %d must be at least 1", c.SuspicionMult)
	case c.SuspicionMaxTimeoutMult < 1:
		return bad("SuspicionMaxTimeoutMult %d must be at least 1", c.SuspicionMaxTimeoutMult)
	case c.AwarenessMaxMultiplier < 1:
		return bad("AwarenessMaxMultiplier %d must be at least 1", c.AwarenessMaxMultiplier)
	case c.GossipInterval <= 0:
		return bad("GossipInterval %v must be positive", c.GossipInterval)
	case c.GossipNodes < 1:
		return bad("GossipNodes %d must be at least 1", c.GossipNodes)
	case c.PushPullInterval < 0:
		return bad("PushPullInterval %v is negative", c.PushPullInterval)
	case c.TCPTimeout <= 0:
		return bad("TCPTimeout %v must be positive", c.TCPTimeout)
	case c.DeadNodeReclaimTime < 0:
		return bad("DeadNodeReclaimTime %v is negative", c.DeadNodeReclaimTime)
	case c.MinNodes < 1:
		return bad("MinNodes %d must be at least 1", c.MinNodes)
	case c.MaxNodes != 0 && c.MaxNodes < c.MinNodes:
		return bad("MaxNodes %d is below MinNodes %d (0 means no cap)", c.MaxNodes, c.MinNodes)
	case c.TickInterval <= 0:
		return bad("TickInterval %v must be positive", c.TickInterval)
	case c.RetryTicks < 1:
		return bad("RetryTicks %d must be at least 1", c.RetryTicks)
	case c.LeaveTimeout <= 0:
		return bad("LeaveTimeout %v must be positive", c.LeaveTimeout)
	}
	if len(c.GossipKey) != 0 {
		if err := checkKey(c.GossipKey); err != nil {
			return fmt.Errorf("GossipKey: %w", err)
		}
	}
	return nil
}

func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: got %d bytes", ErrBadKey, len(k))
}

// ParseGossipKey decodes a base64 key (standard or URL alphabet, whitespace ignored).
func ParseGossipKey(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if k, err = base64.URLEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("%w: not base64: %v", ErrBadKey, err)
		}
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadGossipKey finds the key: file (base64) when named, else the WKD_GOSSIP_KEY environment
// variable. ErrNoKey when neither is set.
func LoadGossipKey(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: read key file: %v", ErrNoKey, err)
		}
		k, err := ParseGossipKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", file, err)
		}
		return k, nil
	}
	if s := os.Getenv(GossipKeyEnv); s != "" {
		k, err := ParseGossipKey(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", GossipKeyEnv, err)
		}
		return k, nil
	}
	return nil, ErrNoKey
}

// NewGossipKey returns a random 32-byte key, base64 encoded, for a key file or WKD_GOSSIP_KEY.
func NewGossipKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// newID returns a random incarnation ID for this process.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
