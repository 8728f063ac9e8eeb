package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"wkd/node"
)

func init() {
	register(command{name: "nats", summary: "run a NATS server: for an external bus (wkd node --nats), or a seed and log server of the nodes' own", group: groupCluster,
		long: "Runs a NATS server. Nodes run servers of their own by default and route to each other;\n" +
			"one started here with --cluster joins them (give its route address to the nodes'\n" +
			"--nats-routes), so that `wkd logs` can read every node from it. Without --cluster it is\n" +
			"a lone server that every node's traffic goes through (wkd node --nats URL).",
		flags: natsFlags})
}

// natsMaxPayloadLimit is nats-server's own ceiling for max_payload.
const natsMaxPayloadLimit = 64 << 20

func natsFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	host := fs.String("host", "0.0.0.0", "listen address (127.0.0.1 for one machine)")
	port := fs.Int("port", node.DefaultNATSPort, "client port (0 picks a free one)")
	token := fs.String("nats-token", "", "client token; prefer --nats-token-file or "+node.NATSTokenEnv+" (flags show in ps)")
	tokenFile := fs.String("nats-token-file", "", "file whose first line is the client token")
	user := fs.String("user", "", "client user name (with --password), instead of a token")
	password := fs.String("password", "", "client password (with --user)")
	insecure := fs.Bool("insecure-no-auth", false, "let anyone connect; only on a sealed network")
	maxPayload := fs.String("max-payload", "8MiB", "largest message: bytes, or a number with KiB or MiB (at most 64MiB)")
	cluster := fs.String("cluster", "", "accept routes from the nodes' servers on host:port (like 0.0.0.0:6222); empty: a lone server")
	clusterAdv := fs.String("cluster-advertise", "", "host:port the other servers reach this one's routes at (default: the --cluster address)")
	routes := fs.String("routes", "", "comma-separated host:port route addresses of other servers to join (with --cluster)")
	var tf tlsFlags
	bindTLSFlags(fs, &tf)
	renamed(fs, "token", "nats-token")
	renamed(fs, "token-file", "nats-token-file")
	return func(args []string) error {
		mp, err := natsParseSize(*maxPayload)
		if err != nil || mp <= 0 || mp > natsMaxPayloadLimit {
			return fmt.Errorf("--max-payload %q: want a size from 1 to 64MiB, like 8MiB or 1048576", *maxPayload)
		}
		if *port < 0 || *port > 65535 {
			return fmt.Errorf("--port %d: want 0..65535", *port)
		}
		tok, err := node.LoadToken(*token, *tokenFile)
		if err != nil {
			return fmt.Errorf("--nats-token-file: %w", err)
		}
		if (*user == "") != (*password == "") {
			return fmt.Errorf("--user and --password go together")
		}
		if tok != "" && *user != "" {
			return fmt.Errorf("give a token or --user/--password, not both")
		}
		if tok == "" && *user == "" && !*insecure {
			return fmt.Errorf("no client credentials: give --nats-token-file, %s or --nats-token (or --user/--password); --insecure-no-auth runs without", node.NATSTokenEnv)
		}

		ncfg := node.NATSConfig{Host: *host, Port: *port, Token: tok, User: *user, Password: *password,
			InsecureNoAuth: *insecure, MaxPayload: int32(mp), ClusterAdvertise: *clusterAdv}
		if *cluster != "" {
			if ncfg.ClusterHost, ncfg.ClusterPort, err = splitHostPort(*cluster); err != nil || ncfg.ClusterHost == "" {
				return fmt.Errorf("--cluster %q: want host:port, like 0.0.0.0:%d", *cluster, node.DefaultRoutePort)
			}
			if err := tf.requirePlaintextOK("--cluster", *cluster); err != nil {
				return err
			}
		}
		if *routes != "" {
			if *cluster == "" {
				return fmt.Errorf("--routes needs --cluster (the address this server takes routes on), like --cluster 0.0.0.0:%d", node.DefaultRoutePort)
			}
			ncfg.Routes = splitList(*routes)
			for _, r := range ncfg.Routes {
				if err := tf.requirePlaintextOK("--routes", r); err != nil {
					return err
				}
			}
		}
		if err := ncfg.Validate(); err != nil {
			return fmt.Errorf("--cluster, --cluster-advertise or --routes: %w", err)
		}
		if ncfg.TLS, err = tf.config(); err != nil {
			return err
		}
		if err := tf.requirePlaintextOK("--host", net.JoinHostPort(*host, "0")); err != nil {
			return err
		}

		zerolog.TimeFieldFormat = time.RFC3339Nano
		host0, _ := os.Hostname()
		log := zerolog.New(os.Stdout).With().Timestamp().Str("node", host0).Str("component", "nats").Logger()
		ncfg.Log = &log
		srv, err := node.StartNATS(ncfg)
		if err != nil {
			return err
		}
		auth := "token"
		switch {
		case *user != "":
			auth = "user/password"
		case tok == "":
			auth = "none (insecure)"
		}
		ev := log.Info().Str("url", srv.ClientURL()).Int("port", srv.Port()).Int64("max_payload", mp).Str("auth", auth)
		if *cluster != "" {
			ev = ev.Int("cluster_port", srv.ClusterPort()).Strs("routes", srv.Routes())
		}
		ev.Msg("NATS ready")

		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		log.Info().Msg("signal: shutting down")
		srv.Shutdown()
		return nil
	}
}

// natsParseSize reads "8388608", "512KiB", "8MiB" (also KB/MB/K/M, all binary).
func natsParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, err
	}
	return v * mult, nil
}
