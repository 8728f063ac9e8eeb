package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

const (
	// DefaultNATSPort is the port `wkd nats` listens on.
	DefaultNATSPort = 4222
	// DefaultMaxPayload fits a 1 MiB all-reduce chunk plus headers with room to spare.
	DefaultMaxPayload = 8 << 20
	// DefaultRoutePort is where a node's embedded server takes routes from the others.
	DefaultRoutePort = 6222
	// ClusterName names the NATS cluster every wkd server joins; servers of another name
	// refuse the route.
	ClusterName = "wkd"
	// RouteUser is the user name a server presents on its routes; the password is the
	// client token (or password), so one secret admits clients and servers alike.
	RouteUser = "wkd-route"
	// NATSTokenEnv names the environment variable holding the NATS token.
	NATSTokenEnv = "WKD_NATS_TOKEN"
	// PendingMsgsLimit and PendingBytesLimit bound what one subscription buffers before the
	// client drops messages and reports a slow consumer: 256 chunks of 1 MiB.
	PendingMsgsLimit  = 1 << 16
	PendingBytesLimit = 256 << 20
	// ReconnectBufSize is how much a client buffers while reconnecting before Publish errors.
	ReconnectBufSize = 32 << 20
	// ReconnectWait is the pause between reconnect attempts (plus up to ReconnectJitter).
	ReconnectWait   = 250 * time.Millisecond
	ReconnectJitter = 250 * time.Millisecond
)

// NATSConfig configures the embedded NATS server. One of Token, User/Password or NKey is
// required unless InsecureNoAuth is set.
type NATSConfig struct {
	// Host is the listen address. "0.0.0.0" serves a cluster; "127.0.0.1" one machine.
	Host string
	// Port is the client port; 0 picks a free one (tests).
	Port int
	// Token is a shared secret clients present (nats.Token).
	Token string
	// User and Password authenticate clients by name (nats.UserInfo).
	User, Password string
	// NKey is a user's public nkey ("U..."); clients sign with its seed.
	NKey string
	// InsecureNoAuth lets anyone connect. Only for a sealed network.
	InsecureNoAuth bool
	// MaxPayload is the largest message in bytes. Larger costs server memory per client;
	// smaller must still hold a chunk plus its header. Defaults to DefaultMaxPayload.
	MaxPayload int32
	// ClusterHost and ClusterPort are where the server accepts routes from the cluster's
	// other servers, which then forward each message only to servers with a subscriber for
	// it. An empty ClusterHost runs a lone server; ClusterPort 0 picks a free port.
	ClusterHost string
	ClusterPort int
	// ClusterAdvertise is the host:port the other servers dial for this one's routes.
	// Defaults to the listen address, which is wrong behind NAT or when listening on 0.0.0.0.
	ClusterAdvertise string
	// Routes are the host:port route listeners of other servers to dial from the start.
	// One reachable server is enough: the servers tell each other about the rest (NATS route
	// gossip). SetRoutes changes the list while running.
	Routes []string
	// TLS, if set, is required of every client and every route, both ways (mutual TLS):
	// a peer without a certificate the config accepts cannot connect. See TLSFiles.
	TLS *tls.Config
	// Log receives the server's notices, warnings and errors; nil discards them.
	Log *zerolog.Logger
}

// DefaultNATSConfig listens on 127.0.0.1:4222 with DefaultMaxPayload; set credentials.
func DefaultNATSConfig() NATSConfig {
	return NATSConfig{Host: "127.0.0.1", Port: DefaultNATSPort, MaxPayload: DefaultMaxPayload}
}

// Validate reports a missing credential or a field out of range.
func (c NATSConfig) Validate() error {
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("%w: NATS port %d is not in 0..65535", ErrBadConfig, c.Port)
	case c.MaxPayload < 0:
		return fmt.Errorf("%w: NATS MaxPayload %d is negative", ErrBadConfig, c.MaxPayload)
	case (c.User == "") != (c.Password == ""):
		return fmt.Errorf("%w: NATS user and password go together", ErrBadConfig)
	case c.ClusterPort < 0 || c.ClusterPort > 65535:
		return fmt.Errorf("%w: NATS cluster port %d is not in 0..65535", ErrBadConfig, c.ClusterPort)
	case c.ClusterHost != "" && c.NKey != "" && !c.InsecureNoAuth:
		return fmt.Errorf("%w: NATS routes are authenticated with the token or password; nkey-only servers cannot form a cluster", ErrBadConfig)
	case c.NKey != "" && !strings.HasPrefix(c.NKey, "U"):
		return fmt.Errorf("%w: NATS NKey must be a user public key (U...)", ErrBadConfig)
	case !c.InsecureNoAuth && c.Token == "" && c.User == "" && c.NKey == "":
		return ErrNoAuth
	}
	n := 0
	for _, s := range []string{c.Token, c.User, c.NKey} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: NATS takes one of token, user/password or nkey", ErrBadConfig)
	}
	for _, r := range append(c.Routes, c.ClusterAdvertise) {
		if r == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("%w: NATS route address %q: want host:port", ErrBadConfig, r)
		}
	}
	return nil
}

// routeSecret is the password routes present: the clients' secret.
func (c NATSConfig) routeSecret() string {
	if c.Token != "" {
		return c.Token
	}
	return c.Password
}

// NATSServer is a nats-server running in this process.
type NATSServer struct {
	srv *server.Server
	cfg NATSConfig

	mu     sync.Mutex     // serializes SetRoutes
	opts   server.Options // as given to the server, for ReloadOptions
	routes []string       // host:port dialed now, sorted
}

// StartNATS starts the server and waits until it accepts clients.
func StartNATS(cfg NATSConfig) (*NATSServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	opts := &server.Options{
		Host:                  cfg.Host,
		Port:                  cfg.Port,
		MaxPayload:            cfg.MaxPayload,
		MaxPending:            int64(cfg.MaxPayload) * 8, // per-client outbound buffer before "slow consumer"
		NoSigs:                true,                      // the command handles signals
		NoLog:                 cfg.Log == nil,
		Authorization:         cfg.Token,
		Username:              cfg.User,
		Password:              cfg.Password,
		DisableShortFirstPing: true,
	}
	if cfg.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if cfg.NKey != "" {
		opts.Nkeys = []*server.NkeyUser{{Nkey: cfg.NKey}}
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = cfg.TLS.Clone(), true, 5
	}
	routes := normalRoutes(cfg.Routes)
	if cfg.ClusterHost != "" {
		opts.Cluster = server.ClusterOpts{
			Name:      ClusterName,
			Host:      cfg.ClusterHost,
			Port:      cfg.ClusterPort,
			Advertise: cfg.ClusterAdvertise,
		}
		if cfg.ClusterPort == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		if secret := cfg.routeSecret(); secret != "" {
			opts.Cluster.Username, opts.Cluster.Password = RouteUser, secret
		}
		if cfg.TLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = cfg.TLS.Clone(), 5
		}
		opts.Routes = routeURLs(routes, opts.Cluster.Username, opts.Cluster.Password)
	} else if len(routes) > 0 {
		return nil, fmt.Errorf("%w: NATS routes %v need a cluster listener (ClusterHost)", ErrBadConfig, routes)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNATS, err)
	}
	if cfg.Log != nil {
		srv.SetLogger(natsLog{*cfg.Log}, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w: server on %s not ready in 10s (port %d taken?)", ErrNATS,
			net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), cfg.Port)
	}
	return &NATSServer{srv: srv, cfg: cfg, opts: *opts, routes: routes}, nil
}

// normalRoutes sorts and dedups host:port addresses, dropping empty ones.
func normalRoutes(hostports []string) []string {
	var out []string
	for _, h := range hostports {
		if h != "" {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func routeURLs(hostports []string, user, password string) []*url.URL {
	urls := make([]*url.URL, len(hostports))
	for i, h := range hostports {
		urls[i] = &url.URL{Scheme: "nats-route", Host: h}
		if user != "" {
			urls[i].User = url.UserPassword(user, password)
		}
	}
	return urls
}

// SetRoutes makes the server dial exactly these route listeners (host:port) besides the
// routes other servers dial to it: new ones are dialed, and dropped ones are no longer
// retried. Servers that are gone leave the list this way instead of being retried forever.
// A no-op when the set is unchanged. A change reloads the server, which re-checks every
// client: one connecting at that moment may be cut off (Connect tries again).
func (s *NATSServer) SetRoutes(hostports []string) error {
	if s.cfg.ClusterHost == "" {
		return fmt.Errorf("%w: routes need a cluster listener (ClusterHost)", ErrBadConfig)
	}
	routes := normalRoutes(hostports)
	for _, r := range routes {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("%w: NATS route address %q: want host:port", ErrBadConfig, r)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(routes, s.routes) {
		return nil
	}
	opts := s.opts
	opts.Routes = routeURLs(routes, s.opts.Cluster.Username, s.opts.Cluster.Password)
	if err := s.srv.ReloadOptions(&opts); err != nil {
		return fmt.Errorf("%w: set routes %v: %v", ErrNATS, routes, err)
	}
	s.opts, s.routes = opts, routes
	return nil
}

// Routes are the host:port route listeners the server dials (as given; sorted).
func (s *NATSServer) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.routes)
}

// Peers is how many other servers this one has routes to now (a pair of servers may hold
// several route connections, one per pool slot).
func (s *NATSServer) Peers() int {
	rz, err := s.srv.Routez(nil)
	if err != nil {
		return 0
	}
	ids := map[string]bool{}
	for _, r := range rz.Routes {
		ids[r.RemoteID] = true
	}
	return len(ids)
}

// Traffic is the bytes of messages this server has taken in and sent out since it started,
// from clients and routes alike.
func (s *NATSServer) Traffic() (in, out int64) {
	v, err := s.srv.Varz(nil)
	if err != nil {
		return 0, 0
	}
	return v.InBytes, v.OutBytes
}

// ClusterPort is the port routes are accepted on (the chosen one when ClusterPort was 0);
// 0 for a lone server.
func (s *NATSServer) ClusterPort() int {
	if s.cfg.ClusterHost == "" {
		return 0
	}
	if a := s.srv.ClusterAddr(); a != nil {
		return a.Port
	}
	return 0
}

// ClientURL is the nats:// URL clients on this machine dial (loopback when the server
// listens on all addresses).
func (s *NATSServer) ClientURL() string {
	host := s.cfg.Host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(s.Port()))
}

// Port is the port the server listens on (the chosen one when Port was 0).
func (s *NATSServer) Port() int {
	if a, ok := s.srv.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Shutdown stops the server and waits for it to finish.
func (s *NATSServer) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Creds are what a client presents; set one kind of secret. TLS adds a client
// certificate and the CA that signs the server's (see TLSFiles).
type Creds struct {
	Token          string
	User, Password string
	NKeySeedFile   string // file holding the user's nkey seed ("SU...")
	TLS            *tls.Config
}

// Connect dials url with creds and reconnects forever (every ReconnectWait plus jitter), so a
// restarted server on the same address is found again; Publish buffers up to
// ReconnectBufSize meanwhile. Extra options (handlers, a name) go after ours.
func Connect(url string, creds Creds, opts ...nats.Option) (*nats.Conn, error) {
	o := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(ReconnectWait),
		nats.ReconnectJitter(ReconnectJitter, ReconnectJitter),
		nats.ReconnectBufSize(ReconnectBufSize),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
	switch {
	case creds.Token != "":
		o = append(o, nats.Token(creds.Token))
	case creds.User != "":
		o = append(o, nats.UserInfo(creds.User, creds.Password))
	case creds.NKeySeedFile != "":
		nk, err := nats.NkeyOptionFromSeed(creds.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed file %s: %v", ErrNATS, creds.NKeySeedFile, err)
		}
		o = append(o, nk)
	}
	if creds.TLS != nil {
		o = append(o, nats.Secure(creds.TLS.Clone()))
	}
	o = append(o, opts...)
	deadline := time.Now().Add(connectRetryFor)
	for {
		nc, err := nats.Connect(url, o...)
		if err == nil {
			return nc, nil
		}
		// A server reloading its routes (SetRoutes) re-checks every client's credentials, and
		// one in the middle of its handshake is dropped or even refused: try again for a
		// while, unless nothing listens there.
		if errors.Is(err, nats.ErrNoServers) || time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: connect %s: %w", ErrNATS, url, err)
		}
		time.Sleep(connectRetryWait)
	}
}

// connectRetryFor and connectRetryWait bound Connect's retries of a handshake cut short.
var (
	connectRetryFor  = 2 * time.Second
	connectRetryWait = 20 * time.Millisecond
)

// SetPendingLimits applies PendingMsgsLimit and PendingBytesLimit to sub.
func SetPendingLimits(sub *nats.Subscription) error {
	return sub.SetPendingLimits(PendingMsgsLimit, PendingBytesLimit)
}

// LoadToken picks the NATS token: the flag value, else the file's first line, else the
// WKD_NATS_TOKEN environment variable. Empty when none is set.
func LoadToken(flagValue, file string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: token file: %v", ErrNoAuth, err)
		}
		tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		if tok == "" {
			return "", fmt.Errorf("%w: token file %s is empty", ErrNoAuth, file)
		}
		return tok, nil
	}
	return os.Getenv(NATSTokenEnv), nil
}

// natsLog adapts zerolog to nats-server's Logger.
type natsLog struct{ log zerolog.Logger }

func (l natsLog) Noticef(f string, v ...any) { l.log.Info().Msgf(f, v...) }
func (l natsLog) Warnf(f string, v ...any)   { l.log.Warn().Msgf(f, v...) }
func (l natsLog) Fatalf(f string, v ...any)  { l.log.Error().Msgf(f, v...) }
func (l natsLog) Errorf(f string, v ...any)  { l.log.Error().Msgf(f, v...) }
func (l natsLog) Debugf(f string, v ...any)  { l.log.Debug().Msgf(f, v...) }
func (l natsLog) Tracef(f string, v ...any)  { l.log.Trace().Msgf(f, v...) }
