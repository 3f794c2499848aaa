// Package owner is a database node's runtime: it probes the local MySQL and journals
// health transitions, renews the quorum lease while the committed state names this node
// owner, catches up, opens writes, holds the VIP, releases, fences, and checks a former
// owner's rejoin. Its life is one explicit state machine ([Phase], [step]); every
// resource it drives (MySQL, VIP, lease renewal, the node) sits behind a small interface
// declared here, so the runtime is tested on fakes.
//
// The package also holds the peer side of the lease ([Promiser]), which every voter,
// the witness included, runs to answer Renew requests.
//
// Safety rules kept here:
//   - read_only=0 and the VIP only while this node is the promoted owner of the current
//     epoch, holds a valid quorum lease, and its MySQL is healthy; otherwise the VIP is
//     dropped and MySQL fenced (read_only=1), at start, on every change and periodically;
//   - act on ownership only from a state at least as new as the commit index learned
//     from a current leader, and re-check it right before read_only=0 and before
//     stopping a replication channel;
//   - renew the VIP's kernel lifetime only within δ of the renewal request.
package owner
