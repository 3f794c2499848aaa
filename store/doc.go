// Package store owns a node's data directory: the raft-boltdb log and stable store
// (checked for damage before it is opened), the file snapshot store, the cluster marker
// that records that the node bootstrapped or joined a cluster and the pending marker of a
// bootstrap not yet finished, an inspection and a start decision that tell a new data dir
// from one that lost its Raft state, and an offline reader of a stopped node's journal.
package store
