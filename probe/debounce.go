package probe

// Debouncer turns a stream of single probe results into a health state with rise/fall
// hysteresis, as keepalived's vrrp_script does: the state turns healthy after Rise consecutive
// successes and unhealthy after Fall consecutive failures. It holds no clock; the caller observes
// at its own pace. A Debouncer is not safe for concurrent use.
type Debouncer struct {
	// Rise is the number of consecutive successes that make an unhealthy state healthy (≥ 1).
	Rise int
	// Fall is the number of consecutive failures that make a healthy state unhealthy (≥ 1).
	Fall int

	healthy bool
	streak  int // consecutive observations that disagree with healthy
}

// NewDebouncer returns a Debouncer starting in the state initial. Rise and fall below 1 are
// treated as 1.
func NewDebouncer(rise, fall int, initial bool) *Debouncer {
	return &Debouncer{Rise: max(rise, 1), Fall: max(fall, 1), healthy: initial}
}

// Observe records one probe result and returns the debounced state and whether this observation
// changed it.
func (d *Debouncer) Observe(ok bool) (healthy bool, changed bool) {
	if ok == d.healthy {
		d.streak = 0
		return d.healthy, false
	}
	d.streak++
	need := max(d.Fall, 1)
	if ok {
		need = max(d.Rise, 1)
	}
	if d.streak < need {
		return d.healthy, false
	}
	d.healthy = ok
	d.streak = 0
	return d.healthy, true
}
