// Package opsview turns keepraft's API answers and journal into what an operator reads:
// journal filters, the ownership history, the outcome of a switchover or maintenance
// request, and a health verdict for the cluster status with exit codes for monitoring.
// It does no I/O; raftctl wires it to the API.
package opsview
