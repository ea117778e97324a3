// Package cluster owns the cluster channel: an encrypted hashicorp/memberlist
// group made of the directors of one site.
//
// The channel gives each director three things:
//
//   - Membership: which directors of the site are alive, with crash
//     detection tuned for a pair (see Timings)
//     and a periodic re-join of configured directors that are missing, so a
//     pair finds itself again after any partition.
//   - Messaging: named topics carried as memberlist UDP messages
//     (Broadcast/Handle). The election uses one topic when an instance has
//     transport = "gossip" (see Channel.Messenger), so adverts still flow
//     where IP protocol 112 or multicast is dropped.
//   - Shared state: every director publishes a State (config digest,
//     per-instance election state, health view). The channel reports
//     config drift between directors and two directors claiming master for
//     one instance longer than a preemption transient: two advert
//     intervals, and at least one second, the channel's own propagation
//     time (Event, Drift, Peers); shorter overlaps are only counted
//     (DualMasterTransients).
//
// Security: every packet and stream is sealed with AES-GCM under a key
// read from a key file (16, 24 or 32 raw bytes, or a passphrase hashed
// with SHA-256; Config.ExtraKeyFiles are also accepted on receipt, to
// rotate the key one director at a time), with memberlist's
// GossipVerifyIncoming/Outgoing on, and carries a cluster label derived
// from the site name that is also authenticated, so two sites on one
// network never merge. Packets that fail authentication or
// carry another site's label are dropped by memberlist before they reach
// this package; the channel counts them from memberlist's log lines (Stats).
// memberlist does not stop replays, so topic messages carry the sender's
// epoch and a sequence number checked against a sliding window per sender
// (Stats.Replayed); state records carry an epoch and a version.
// Running without a key needs Config.Insecure and logs a warning at every
// start.
//
// DefaultTimings: probe every 1 s, 500 ms probe timeout, suspicion x2,
// gossip every 500 ms. The channel's membership reports state and drift;
// a crash failover does not wait for it, as the election detects a dead
// master from its adverts. BenchmarkFailureDetection and
// BenchmarkBroadcastLatency measure how long a crash, a partition, a Leave
// and a message take; docs/benchmarks.md has the figures.
//
// The package does not import the site configuration: the wiring package
// converts the site file into a Config.
package cluster
