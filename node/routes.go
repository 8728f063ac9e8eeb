package node

import (
	"context"
	"slices"
	"time"

	"github.com/rs/zerolog"
)

// KeepRoutes makes srv dial the route listeners the other live members announce, plus extra
// (servers outside the membership, such as a seed or log server), reading the membership
// every interval until ctx ends. A joining node's server thus meets every other node's, and a
// departed node's address is no longer dialed. Messages then go from the publisher's server
// straight to the subscriber's: no server carries the others' traffic. It blocks; run it in
// its own goroutine.
func KeepRoutes(ctx context.Context, n *Node, srv *NATSServer, extra []string, interval time.Duration, log zerolog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last []string
	for {
		routes := normalRoutes(append(slices.Clone(extra), n.RouteAddrs()...))
		if !slices.Equal(routes, last) {
			if err := srv.SetRoutes(routes); err != nil {
				log.Warn().Err(err).Msg("NATS routes not updated")
			} else {
				log.Info().Strs("routes", routes).Msg("NATS routes")
				last = routes
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
