// Package api holds the admin API's wire types and the one client that every caller
// uses: the peers of a keepraftd node (proposal forwarding, lease renewal, polling),
// raftctl and the end-to-end tests.
package api
