package vrrp

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// advertWriter sends one advert; *Conn is the real one.
type advertWriter interface {
	WriteAdvert(p *Packet) error
}

var _ advertWriter = (*Conn)(nil)

// Timing of the speaker.
const (
	// maxPoll bounds how long a change of enabled() goes unnoticed.
	maxPoll = 100 * time.Millisecond
	// resignAdverts is how many priority-0 adverts Resign sends, resignGap apart.
	resignAdverts = 3
	resignGap     = 20 * time.Millisecond
	// warnEvery rate-limits repeated warnings of one kind.
	warnEvery = 30 * time.Second
)

// Speaker sends the owner's adverts every AdvertInt while enabled() returns true, and is
// silent otherwise. Given a change channel, it looks at enabled() when the channel fires
// (and at each advert), so the first advert goes out at once and an idle speaker never
// wakes; without one it polls, and the first advert goes out within 100 ms (or
// AdvertInt/4 if shorter). Later adverts keep an exact AdvertInt cadence. Send errors
// are logged (rate-limited) and counted, never fatal.
type Speaker struct {
	w       advertWriter
	cfg     Config
	advert  *Packet
	enabled func() bool
	changed <-chan struct{}
	log     *zap.Logger
	poll    time.Duration

	// mu serialises writes between Run and Resign and guards resigned.
	mu       sync.Mutex
	resigned bool

	sent     atomic.Uint64
	failed   atomic.Uint64
	lastWarn time.Time
}

// NewSpeaker returns a Speaker that writes cfg's advert (cfg.Priority) to w. enabled is
// called from Run's goroutine and must be cheap and non-blocking. changed, when not nil,
// receives a value whenever enabled() may have changed (a buffered channel of one that
// the producer fills without blocking loses nothing); Run is then its only reader. When
// nil, Run polls enabled(). cfg must pass [Config.Validate].
func NewSpeaker(w advertWriter, cfg Config, enabled func() bool, changed <-chan struct{}, log *zap.Logger) *Speaker {
	poll := min(maxPoll, cfg.AdvertInt/4)
	if poll <= 0 {
		poll = maxPoll
	}
	return &Speaker{
		w:       w,
		cfg:     cfg,
		advert:  cfg.Advert(cfg.Priority),
		enabled: enabled,
		changed: changed,
		log:     log.Named("vrrp_speaker").With(zap.Uint8("vrid", cfg.VRID), zap.String("interface", cfg.Interface)),
		poll:    poll,
	}
}

// Run advertises until ctx is done, then returns nil. It sends no priority-0 advert on
// return; see [Speaker.Resign].
func (s *Speaker) Run(ctx context.Context) error {
	var (
		speaking bool
		next     time.Time
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if speaking {
				s.log.Info("stopped advertising", zap.String("reason", "shutdown"))
			}
			return nil
		case <-timer.C:
		case <-s.changed: // nil without a change channel: never ready
			timer.Stop()
		}
		now := time.Now()
		on := s.enabled()
		switch {
		case on && !speaking:
			speaking, next = true, now
			s.log.Info("started advertising", zap.Uint8("priority", s.cfg.Priority), zap.Duration("advert_int", s.cfg.AdvertInt))
		case !on && speaking:
			speaking = false
			s.log.Info("stopped advertising", zap.String("reason", "disabled"))
		}
		if !on {
			s.mu.Lock()
			s.resigned = false // re-armed: the next enable speaks again
			s.mu.Unlock()
		}
		if speaking && !now.Before(next) {
			s.send(now)
			next = next.Add(s.cfg.AdvertInt)
			if !next.After(now) { // we fell behind (stalled process): restart the cadence
				next = now.Add(s.cfg.AdvertInt)
			}
		}
		switch {
		case s.changed == nil && speaking:
			timer.Reset(min(s.poll, next.Sub(now)))
		case s.changed == nil:
			timer.Reset(s.poll)
		case speaking:
			timer.Reset(next.Sub(now))
		}
	}
}

func (s *Speaker) send(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resigned {
		return
	}
	if err := s.w.WriteAdvert(s.advert); err != nil {
		s.failed.Add(1)
		if now.Sub(s.lastWarn) >= warnEvery {
			s.lastWarn = now
			s.log.Warn("send advert", zap.Error(err), zap.Uint64("failed_total", s.failed.Load()))
		}
		return
	}
	s.sent.Add(1)
}

// Resign sends priority-0 adverts (3, 20 ms apart) so that backups take over after their
// skew time, and silences Run until enabled() has been observed false again. It returns an
// error when none of them could be sent or ctx ended first. Use it only
// when the whole cluster gives the VIP up: an internal handover just stops advertising.
func (s *Speaker) Resign(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resigned = true
	p := s.cfg.Advert(PriorityResign)
	var (
		err  error
		sent int
	)
	for i := range resignAdverts {
		if i > 0 {
			t := time.NewTimer(resignGap)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("resign VRID %d: %w", s.cfg.VRID, ctx.Err())
			case <-t.C:
			}
		}
		if werr := s.w.WriteAdvert(p); werr != nil {
			s.failed.Add(1)
			err = werr
			continue
		}
		s.sent.Add(1)
		sent++
	}
	if sent == 0 {
		return fmt.Errorf("resign VRID %d: %w", s.cfg.VRID, err)
	}
	s.log.Info("resigned", zap.Int("adverts", resignAdverts))
	return nil
}

// SpeakerStats counts adverts.
type SpeakerStats struct {
	// Sent counts adverts written, resign adverts included.
	Sent uint64
	// Failed counts adverts whose write failed.
	Failed uint64
}

// Stats returns the advert counters.
func (s *Speaker) Stats() SpeakerStats {
	return SpeakerStats{Sent: s.sent.Load(), Failed: s.failed.Load()}
}
