// Package probe owns MySQL/MariaDB health checks, GTID-set parsing and the SQL steps of
// fencing and promotion.
package probe
