// Package bench holds the cluster's benchmarks, which start processes of this program as
// workers: the ring all-reduce over a loopback NATS server against raw NATS pub-sub and TCP
// (Allreduce), the ring between network namespaces joined by rate-limited links, through one
// server and through a server per node (Net), and the share of a distributed distillation step
// spent waiting on gradients (Overlap). A worker learns its part from the environment
// (WorkerEnv and the NATS token), never from its command line.
package bench
