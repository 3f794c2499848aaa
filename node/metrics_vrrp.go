package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepraft/keepraft/vrrp"
)

// speakerStats and listenerStats are the VRRP speaker's and listener's counters
// (*vrrp.Speaker and *vrrp.Listener).
type speakerStats interface{ Stats() vrrp.SpeakerStats }
type listenerStats interface{ Stats() vrrp.Stats }

// dropReasons are the listener's drop reasons, each exported from the first scrape so
// that rate() sees the first drop; invalid are those that mean a bad or foreign packet
// rather than one of ours (DropSelf) or another virtual router's (DropOtherVRID).
var dropReasons = []vrrp.DropReason{vrrp.DropShort, vrrp.DropType, vrrp.DropChecksum, vrrp.DropMalformed, vrrp.DropSelf, vrrp.DropTTL,
	vrrp.DropVersion, vrrp.DropOtherVRID, vrrp.DropAuth, vrrp.DropAdvertInt, vrrp.DropAddrCount, vrrp.DropAddresses}

func invalidDrop(r vrrp.DropReason) bool { return r != vrrp.DropSelf && r != vrrp.DropOtherVRID }

// vrrpCollector exports the VRRP speaker's and listener's counters at scrape time.
type vrrpCollector struct {
	s speakerStats
	l listenerStats

	sent, sendErrors, received, accepted, invalid, dropped *prometheus.Desc
}

func newVRRPCollector(s speakerStats, l listenerStats) *vrrpCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("keepraft", "vrrp", name), help, labels, nil)
	}
	return &vrrpCollector{
		s:          s,
		l:          l,
		sent:       d("adverts_sent_total", "VRRP adverts this node sent (priority-0 resign adverts included)."),
		sendErrors: d("advert_send_errors_total", "VRRP adverts whose send failed."),
		received:   d("adverts_received_total", "VRRP packets read on vip.interface, valid or not."),
		accepted:   d("adverts_accepted_total", "Foreign adverts on our virtual router id that passed every check."),
		invalid:    d("adverts_invalid_total", "Packets dropped as invalid: every drop reason but self and other_vrid."),
		dropped:    d("adverts_dropped_total", "Packets dropped, by reason.", "reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *vrrpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.sendErrors, c.received, c.accepted, c.invalid, c.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *vrrpCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ss := c.s.Stats()
	counter(c.sent, ss.Sent)
	counter(c.sendErrors, ss.Failed)
	ls := c.l.Stats()
	counter(c.received, ls.Received)
	counter(c.accepted, ls.Accepted)
	var invalid uint64
	seen := map[vrrp.DropReason]bool{}
	for _, r := range dropReasons {
		seen[r] = true
		counter(c.dropped, ls.Dropped[r], string(r))
	}
	for r, n := range ls.Dropped {
		if !seen[r] { // a reason newer than this list
			counter(c.dropped, n, string(r))
		}
		if invalidDrop(r) {
			invalid += n
		}
	}
	counter(c.invalid, invalid)
}

// registerVRRPMetrics adds the VRRP speaker's and listener's counters to the node's
// registry; startVRRP calls it once both are built.
func (n *Node) registerVRRPMetrics(s *vrrp.Speaker, l *vrrp.Listener) error {
	if err := n.metrics.labeled.Register(newVRRPCollector(s, l)); err != nil {
		return fmt.Errorf("register the VRRP metrics: %w", err)
	}
	return nil
}
