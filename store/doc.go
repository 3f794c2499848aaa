// Package store owns a node's data directory: the raft-boltdb log and stable store,
// the file snapshot store, and an offline reader of a stopped node's journal.
package store
