// Package monitoring holds keepraft's Prometheus alert rules (alerts.yml, with promtool
// unit tests in alerts_test.yml), a Grafana dashboard (dashboard.json) and the catalogue
// of the series keepraftd exports (metrics.txt); see README.md. It has no code: its tests
// check the rules with promtool and hold every expression to the catalogue, which a test
// in package node holds to what the code registers.
package monitoring
