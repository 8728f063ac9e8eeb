// Package node is the cluster edge of wkd: membership, views, embedded NATS, the cluster member
// that drives a replica through views, log shipping and metrics.
//
// Contract:
//   - Membership is hashicorp/memberlist with timings tuned so a crashed node is noticed in about
//     a second (Config, DefaultLocalConfig, DefaultClusterConfig). Gossip is encrypted with a
//     shared 16/24/32-byte key; a node with another key cannot join. Each node's metadata carries
//     its ID (new per process), NATS URL, NATS route address and State.
//   - A View is (generation, members sorted by name); rank = index in Members. Views are agreed
//     by Agreement, a state machine with no I/O, no goroutines and no clock (messages in,
//     messages out, ticks), in the style of etcd-io/raft. Node drives it from memberlist events
//     and carries its messages as memberlist user messages (SendReliable): they are encrypted
//     with the gossip key, need no NATS, and reach exactly the nodes memberlist knows.
//   - A view is agreed when every member acknowledged the same (generation, members); the
//     generation only grows. Below Config.MinNodes nodes wait; above Config.MaxNodes the extra
//     nodes wait as spares. Two halves of a network partition can each agree a view of their
//     own; set MinNodes above half the cluster when that must not happen.
//   - StartNATS runs nats-server in-process with mandatory authentication; Connect dials it and
//     reconnects forever. Every node runs one, and KeepRoutes makes it route to every other
//     member's (a full mesh): a message goes from its publisher's server straight to its
//     subscriber's. Routes present the client secret; with TLSFiles, clients and routes use
//     mutual TLS, and a peer is accepted if and only if the cluster CA signed its certificate.
//   - Runner drives a Replica (the trainer) through the agreed views: it points the ring
//     all-reduce at each view, brings every replica to the most advanced state (gather of step
//     counts, the state re-sent until acknowledged), trains, and on a view change under a step
//     starts again from the last completed one. Every wait is bounded and wakes on a
//     condition (Node.WaitChange), not a sleep.
//   - Shipper ships log lines to NATS subject "wkd.logs.<node>" without ever blocking the
//     writer: when its ring is full, lines are dropped, counted and the count is logged.
//   - Metrics exposes Prometheus gauges, counters and histograms on /metrics.
//
// Errors are returned at every I/O boundary (sockets, files, keys, config); nothing panics on
// bad input. Errors wrap the package's sentinel errors (ErrNoKey, ...) and are tested with
// errors.Is.
package node
