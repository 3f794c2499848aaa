// Package kaconf reads keepalived.conf and converts one vrrp_instance into a keepraftd
// configuration.
//
// [Parse] follows keepalived's own reading rules where they matter for an import: the file
// is line-oriented, '#' and '!' start comments, "…" quotes a word, braces split a line
// wherever they stand, and each logical line carries one keyword whose extra words keepalived
// ignores (so a one-line authentication block loses its password). Unknown keywords become
// warnings, not errors. [Convert] renders the keepraftd YAML, with placeholders for what
// keepalived.conf cannot supply (cluster, node, MySQL access), and lists every setting it
// could not map.
package kaconf
