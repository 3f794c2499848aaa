// Package e2e holds the end-to-end tests: real keepraftd processes, MariaDB dual masters
// and keepalived in the testenv network-namespace lab, driven through faults while an
// event-based tracker checks that the VIP never has two holders.
package e2e
