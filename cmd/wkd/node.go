package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"wkd/allreduce"
	"wkd/internal/safetensors"
	"wkd/node"
	"wkd/trainer"
)

func init() {
	register(command{name: "node", summary: "one member of a training cluster: --job train|distill plus that job's flags", group: groupCluster,
		long: "One member of a training cluster. The nodes find each other by gossip (--seeds), train\n" +
			"data-parallel on their shares of the batch and average gradients over NATS: each node\n" +
			"runs a NATS server that routes to the others' (--nats uses an existing one instead).\n" +
			"Beside the cluster flags, a node takes the flags of its job: wkd train or wkd distill.",
		flags: nodeFlags, help: printReferenceNames})
}

// clusterFlags are the flags of a cluster member, beside its job's flags.
type clusterFlags struct {
	job       string
	name      string
	bind      string
	advertise string
	seeds     string
	keyFile   string
	natsURL   string
	natsHost  string // the node's own server: client address
	natsRoute string // the node's own server: route address
	natsExtra string // more route addresses to join
	natsToken string
	tokenFile string
	minNodes  int
	maxNodes  int
	metrics   string
	lan       bool
	prefix    string
	joinWait  time.Duration
	arTimeout time.Duration
	overlap   bool
	tls       tlsFlags
}

func bindClusterFlags(fs *pflag.FlagSet, c *clusterFlags) {
	host, _ := os.Hostname()
	// jobFor read --job into c.job before the flags were bound, the job's flags following
	// it: here it is only checked.
	c.job = cmp.Or(c.job, "distill")
	fs.Var(funcFlag{typ: "name", get: func() string { return c.job }, set: func(v string) error {
		switch {
		case v != "train" && v != "distill":
			return errors.New("use train or distill")
		case v != c.job:
			return fmt.Errorf("--job %s after --job %s: give one", v, c.job)
		}
		return nil
	}}, "job", "what the cluster runs: train (a teacher) or distill (a student)")
	fs.StringVar(&c.name, "name", fmt.Sprintf("%s-%d", host, os.Getpid()), "unique node name; ranks follow names in sorted order")
	fs.StringVar(&c.bind, "bind", "0.0.0.0:7946", "memberlist address (TCP and UDP) host:port; port 0 picks one")
	fs.StringVar(&c.advertise, "advertise", "", "address other nodes reach this one at (default: the bind address)")
	fs.StringVar(&c.seeds, "seeds", "", "comma-separated host:port of nodes to join (empty: start a cluster)")
	fs.StringVar(&c.keyFile, "gossip-key-file", "", "file with the base64 gossip key (else $WKD_GOSSIP_KEY); make one with 'wkd keygen'")
	fs.StringVar(&c.natsURL, "nats", "", "use this NATS server or cluster (nats://host:4222) instead of running one in the node")
	fs.StringVar(&c.natsHost, "nats-listen", "0.0.0.0:4222", "the node's own NATS server: client address host:port ('wkd logs' reads the cluster there); port 0 picks one")
	fs.StringVar(&c.natsRoute, "nats-cluster", "0.0.0.0:6222", "the node's own NATS server: route address host:port the other nodes' servers dial; port 0 picks one")
	fs.StringVar(&c.natsExtra, "nats-routes", "", "comma-separated route addresses host:port of servers outside the nodes to join, like a 'wkd nats --cluster' seed")
	fs.StringVar(&c.natsToken, "nats-token", "", "NATS token (prefer --nats-token-file or $WKD_NATS_TOKEN)")
	fs.StringVar(&c.tokenFile, "nats-token-file", "", "file with the NATS token")
	fs.IntVar(&c.minNodes, "min-nodes", 1, "train only when at least this many nodes are in the view; below it, wait")
	fs.IntVar(&c.maxNodes, "max-nodes", 64, "at most this many nodes train; extra ones wait as spares")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus /metrics on this address (e.g. :9100)")
	fs.BoolVar(&c.lan, "lan", false, "LAN timings (crash noticed in about 1 s, all-reduce timeout 3 s) instead of loopback ones")
	fs.StringVar(&c.prefix, "subject-prefix", "wkd", "NATS subject prefix, so several clusters can share a server")
	fs.DurationVar(&c.joinWait, "join-timeout", 60*time.Second, "how long to keep trying the seeds")
	fs.DurationVar(&c.arTimeout, "allreduce-timeout", 0, "abandon a step when a neighbour is silent this long (0: the preset's)")
	fs.BoolVar(&c.overlap, "overlap", true, "average gradient buckets while backward still runs (false: after backward)")
	bindTLSFlags(fs, &c.tls)
}

// jobFor reads --job from args (its flags depend on it).
func jobFor(args []string) string {
	for i, a := range args {
		switch {
		case a == "--":
			return "distill"
		case (a == "--job" || a == "-job") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--job=") || strings.HasPrefix(a, "-job="):
			return a[strings.Index(a, "=")+1:]
		}
	}
	return "distill"
}

// nodeFlags binds the cluster flags and those of the job --job names.
func nodeFlags(fs *pflag.FlagSet, argv []string) func([]string) error {
	job := jobFor(argv)
	distill := job != "train"
	f, presetErr := newRunFlags(argv, distill)
	cf := clusterFlags{job: job}
	bindClusterFlags(fs, &cf) // first: its --name (the node's) stands, not the reference's run name
	bindRunFlags(fs, &f, distill)
	return func([]string) error {
		if presetErr != nil {
			return presetErr
		}
		cfg, err := resolveRun(fs, &f, distill)
		if err != nil {
			return err
		}
		// A cluster started again over its run folder (every node stopped, then started, by
		// whatever names) continues from the newest checkpoint there, as an elastic launcher
		// would; the other nodes receive that state when the view forms.
		if !f.resume && f.resumeFrom == "" && !f.overwrite {
			latest, err := trainer.LatestCheckpoint(cfg.Dir)
			if err != nil {
				return fmt.Errorf("--out %s: %w", cfg.Dir, err)
			}
			if latest != "" {
				f.resume = true
				if cfg, err = resolveRun(fs, &f, distill); err != nil {
					return fmt.Errorf("--out %s holds checkpoints of a run, which a node continues: %w", cfg.Dir, err)
				}
			}
		}
		return runNode(cf, f, cfg)
	}
}

// runNode runs one cluster member until its job ends.
func runNode(cf clusterFlags, f runFlags, cfg trainer.Config) error {
	if cf.minNodes > cfg.BatchSize {
		return fmt.Errorf("--min-nodes %d is more than --batch-size %d (the global batch): every node needs a sample", cf.minNodes, cfg.BatchSize)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano

	token, err := node.LoadToken(cf.natsToken, cf.tokenFile)
	if err != nil {
		return err
	}
	tlsCfg, err := cf.tls.config()
	if err != nil {
		return err
	}
	if cf.natsURL != "" {
		err = cf.tls.requirePlaintextOK("--nats", cf.natsURL)
	} else {
		err = checkNodeNATSFlags(cf)
	}
	if err != nil {
		return err
	}
	srv, natsURL, err := startNodeNATS(cf, token, tlsCfg)
	if err != nil {
		return err
	}
	if srv != nil {
		defer srv.Shutdown()
	}
	nc, err := node.Connect(natsURL, node.Creds{Token: token, TLS: tlsCfg}, nats.Name(cf.name))
	if err != nil {
		if srv != nil {
			return fmt.Errorf("the node's own NATS server at %s: %w", natsURL, err)
		}
		return fmt.Errorf("--nats %s: %w (is the server running, and is the token right?)", natsURL, err)
	}
	defer nc.Close()
	ship := node.NewShipper(nc, cf.name)
	defer ship.Close()
	out := io.MultiWriter(os.Stdout, ship)
	log := node.NewLogger(cf.name, os.Stdout, ship)
	if srv != nil {
		log.Info().Str("url", natsURL).Int("route_port", srv.ClusterPort()).Bool("tls", tlsCfg != nil).Msg("NATS server of this node")
	}
	metrics := node.NewMetrics(cf.name, ship)
	if cf.metrics != "" {
		srv, err := metrics.ServeMetrics(cf.metrics)
		if err != nil {
			return fmt.Errorf("--metrics %s: %w", cf.metrics, err)
		}
		defer srv.Close()
	}

	ncfg := node.DefaultLocalConfig()
	arCfg := allreduce.DefaultLocalConfig()
	if cf.lan {
		ncfg, arCfg = node.DefaultClusterConfig(), allreduce.DefaultConfig()
	}
	if cf.arTimeout > 0 {
		arCfg.TimeoutTicks = int(cf.arTimeout / arCfg.TickInterval)
	}
	// A rank needs at least one sample of each global batch: nodes beyond the batch size wait
	// as spares.
	ncfg.Name, ncfg.NATSURL, ncfg.MinNodes, ncfg.MaxNodes = cf.name, natsURL, cf.minNodes, min(cf.maxNodes, cfg.BatchSize)
	if srv != nil {
		ncfg.NATSPort, ncfg.RoutePort = srv.Port(), srv.ClusterPort()
	}
	ncfg.GossipKeyFile = cf.keyFile
	if ncfg.BindAddr, ncfg.BindPort, err = splitHostPort(cf.bind); err != nil {
		return fmt.Errorf("--bind: %w", err)
	}
	if cf.advertise != "" {
		if ncfg.AdvertiseAddr, ncfg.AdvertisePort, err = splitHostPort(cf.advertise); err != nil {
			return fmt.Errorf("--advertise: %w", err)
		}
	}
	if cf.seeds != "" {
		ncfg.Seeds = strings.Split(cf.seeds, ",")
	}
	n, err := node.New(ncfg, log)
	if err != nil {
		return err
	}
	defer n.Shutdown()
	n.SetMetrics(metrics)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	deadline := time.Now().Add(cf.joinWait)
	for {
		err := n.Contact(nil)
		if err == nil {
			break
		}
		if !errors.Is(err, node.ErrJoin) || time.Now().After(deadline) {
			return fmt.Errorf("joining %v: %w (are the seeds up, and is the gossip key the same?)", ncfg.Seeds, err)
		}
		log.Warn().Err(err).Msg("no seed answered yet; retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	defer n.Leave()
	if srv != nil {
		rctx, stopRoutes := context.WithCancel(context.Background())
		routesDone := make(chan struct{})
		go func() {
			defer close(routesDone)
			node.KeepRoutes(rctx, n, srv, splitList(cf.natsExtra), 500*time.Millisecond, log.With().Str("component", "nats").Logger())
		}()
		defer func() { stopRoutes(); <-routesDone }()
		if err := awaitRoute(ctx, n, srv, len(splitList(cf.natsExtra)), deadline, log); err != nil {
			return err
		}
	}
	if err := n.SetState(node.StateReady); err != nil {
		return err
	}

	runner := node.NewRunner(n, nc, node.RunnerConfig{Prefix: cf.prefix, Reduce: arCfg}, log)
	var t *trainer.Trainer
	t, err = trainer.New(cfg, out, trainer.WithLogFields(map[string]any{"node": cf.name}), trainer.WithOverlap(cf.overlap),
		trainer.WithObserver(func(r trainer.StepReport) {
			metrics.ObserveStep(r.Duration, r.Images)
			for _, l := range r.Losses {
				metrics.SetLoss(l.Name, l.Value)
			}
			// On the steps the trainer logs, a digest of the replica's state: equal digests
			// across nodes show the replicas are bitwise identical.
			if r.Step%int64(cfg.LogEvery) == 0 || r.Step == 1 {
				if sum, err := replicaDigest(t); err == nil {
					log.Info().Int64("step", r.Step).Str("state_sha", sum).Msg("replica state")
				}
			}
		}))
	if err != nil {
		return withDataHint(err, cfg.Data)
	}
	defer t.Close()
	if f.resume || f.resumeFrom != "" {
		if err := t.Resume(f.resumeFrom); err != nil {
			return err
		}
	}
	return runner.Run(ctx, trainerReplica{t})
}

// checkNodeNATSFlags checks the addresses of the node's own NATS server, and that none of them
// would carry plaintext off the machine without --insecure.
func checkNodeNATSFlags(cf clusterFlags) error {
	for _, f := range []struct{ name, value, like string }{
		{"--nats-listen", cf.natsHost, fmt.Sprintf("0.0.0.0:%d", node.DefaultNATSPort)},
		{"--nats-cluster", cf.natsRoute, fmt.Sprintf("0.0.0.0:%d", node.DefaultRoutePort)},
	} {
		host, port, err := splitHostPort(f.value)
		if err != nil || host == "" || port < 0 || port > 65535 {
			return fmt.Errorf("%s %q: want host:port with a port from 0 (any free one) to 65535, like %s", f.name, f.value, f.like)
		}
		if err := cf.tls.requirePlaintextOK(f.name, f.value); err != nil {
			return err
		}
	}
	for _, r := range splitList(cf.natsExtra) {
		if _, port, err := splitHostPort(r); err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("--nats-routes %q: want comma-separated host:port, like nats:%d", r, node.DefaultRoutePort)
		}
		if err := cf.tls.requirePlaintextOK("--nats-routes", r); err != nil {
			return err
		}
	}
	return nil
}

// startNodeNATS starts the node's own NATS server, which routes to the other nodes' servers,
// unless --nats names a server to use instead. It returns the server (nil with --nats) and the
// URL to connect to.
func startNodeNATS(cf clusterFlags, token string, tlsCfg *tls.Config) (*node.NATSServer, string, error) {
	if cf.natsURL != "" {
		return nil, cf.natsURL, nil
	}
	if token == "" {
		return nil, "", fmt.Errorf("the node's NATS server needs a token that every node shares: set %s, --nats-token-file or --nats-token (make one with 'wkd keygen')", node.NATSTokenEnv)
	}
	cfg := node.NATSConfig{Token: token, MaxPayload: node.DefaultMaxPayload, Routes: splitList(cf.natsExtra), TLS: tlsCfg}
	var err error
	if cfg.Host, cfg.Port, err = splitHostPort(cf.natsHost); err != nil {
		return nil, "", fmt.Errorf("--nats-listen %q: want host:port, like 0.0.0.0:%d", cf.natsHost, node.DefaultNATSPort)
	}
	if cfg.ClusterHost, cfg.ClusterPort, err = splitHostPort(cf.natsRoute); err != nil || cfg.ClusterHost == "" {
		return nil, "", fmt.Errorf("--nats-cluster %q: want host:port, like 0.0.0.0:%d", cf.natsRoute, node.DefaultRoutePort)
	}
	if cf.advertise != "" {
		// Other servers gossip this address to each other; the listen address may be 0.0.0.0.
		h, _, _ := net.SplitHostPort(cf.advertise)
		if cfg.ClusterPort != 0 {
			cfg.ClusterAdvertise = net.JoinHostPort(h, strconv.Itoa(cfg.ClusterPort))
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("--nats-routes %q: %w", cf.natsExtra, err)
	}
	srv, err := node.StartNATS(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("the node's NATS server (--nats-listen %s, --nats-cluster %s): %w (a port in use? port 0 picks a free one)", cf.natsHost, cf.natsRoute, err)
	}
	return srv, srv.ClientURL(), nil
}

// awaitRoute waits until this node's NATS server has a route to another server, when any
// other node announces one: a node whose routes are refused (a certificate of another CA,
// another token, a closed port) must not take a rank in a ring it cannot reach.
func awaitRoute(ctx context.Context, n *node.Node, srv *node.NATSServer, extra int, deadline time.Time, log zerolog.Logger) error {
	said := time.Now()
	for {
		// More peers than servers outside the membership (--nats-routes): a node's among them.
		others := n.RouteAddrs()
		if len(others) == 0 || srv.Peers() > extra {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no NATS route to the other nodes' servers %v within --join-timeout: they refuse this one (a TLS certificate of another CA, another NATS token) or cannot be reached (is their --nats-cluster port open?)", others)
		}
		if time.Since(said) > 5*time.Second {
			log.Warn().Strs("routes", others).Msg("waiting for a NATS route to the other nodes")
			said = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// replicaDigest is the SHA-256 of the trained networks' parameters and their optimizer moments
// (names, shapes and bits, in name order). It leaves out what may differ between identical
// replicas: the image pools, filled from each rank's own share, and the metadata (run folder).
func replicaDigest(t *trainer.Trainer) (string, error) {
	b, err := t.StateBytes()
	if err != nil {
		return "", err
	}
	tensors, _, err := safetensors.Decode(b)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if !strings.HasPrefix(n, "pool_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	h := sha256.New()
	var w [4]byte
	for _, n := range names {
		x := tensors[n]
		fmt.Fprintf(h, "%s%v;", n, x.Shape)
		for _, v := range x.Data {
			binary.LittleEndian.PutUint32(w[:], math.Float32bits(v))
			h.Write(w[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// splitHostPort parses host:port with a numeric port.
func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

// trainerReplica is the trainer as the Runner drives it.
type trainerReplica struct{ *trainer.Trainer }

func (r trainerReplica) Train(ctx context.Context, rank, size int, sync *node.GradSync) error {
	r.SetWorld(trainer.World{Rank: rank, Size: size, Sync: sync})
	err := r.Run(ctx)
	if errors.Is(err, trainer.ErrStepAborted) {
		return fmt.Errorf("%w: %w", node.ErrStepAborted, err)
	}
	return err
}
