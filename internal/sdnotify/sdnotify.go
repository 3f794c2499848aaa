// Package sdnotify tells systemd (Type=notify) how the daemon is doing: READY=1 once the
// node runs, WATCHDOG=1 at half of WATCHDOG_USEC while the node's run loop lives, and
// STOPPING=1 when it shuts down.
//
// Without NOTIFY_SOCKET every message is a no-op, and without WATCHDOG_USEC (or with a
// WATCHDOG_PID of another process) no pings are sent. A failed delivery is logged, never
// returned: systemd's socket going away must not stop the node.
package sdnotify

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Notifier sends the daemon's state to systemd. Build it with [New].
type Notifier struct {
	log *zap.Logger
	// send delivers one state string; sent is false without NOTIFY_SOCKET.
	send func(state string) (sent bool, err error)
	// watchdog returns systemd's watchdog timeout for this process, 0 when disabled.
	watchdog func() (time.Duration, error)
}

// New returns a Notifier that talks to the socket named by NOTIFY_SOCKET and reads the
// watchdog timeout from WATCHDOG_USEC and WATCHDOG_PID, as systemd sets them.
func New(log *zap.Logger) *Notifier {
	return &Notifier{
		log:      log,
		send:     func(state string) (bool, error) { return daemon.SdNotify(false, state) },
		watchdog: func() (time.Duration, error) { return daemon.SdWatchdogEnabled(false) },
	}
}

// notify sends one state and logs (never fails on) a delivery error.
func (s *Notifier) notify(state string) {
	sent, err := s.send(state)
	switch {
	case err != nil:
		s.log.Warn("systemd notify", zap.String("state", state), zap.Error(err))
	case sent:
		s.log.Debug("systemd notify", zap.String("state", state))
	}
}

// Run sends READY=1 at once (the caller starts it once the node runs), then WATCHDOG=1
// every half watchdog timeout until ctx ends, then STOPPING=1. Cancel ctx when the node's
// run loop returns, so the pings stop with it; [Notifier.Supervise] does that.
func (s *Notifier) Run(ctx context.Context) error {
	interval, err := s.watchdog()
	if err != nil {
		// A malformed WATCHDOG_USEC: systemd will restart a daemon that never pings, so
		// say why here.
		s.log.Error("systemd watchdog: no pings sent", zap.Error(fmt.Errorf("WATCHDOG_USEC: %w", err)))
		interval = 0
	}
	s.notify(daemon.SdNotifyReady)
	defer s.notify(daemon.SdNotifyStopping)
	if interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.notify(daemon.SdNotifyWatchdog)
		}
	}
}

// Runner is the daemon's run loop, which [Notifier.Supervise] reports on.
type Runner interface {
	Run(ctx context.Context) error
}

// Supervise runs node and, beside it, the notifier: READY=1 once node's run loop has
// started, watchdog pings while it lives, STOPPING=1 when it ends, whether ctx ended (a
// signal) or node failed by itself. It returns node's error.
func (s *Notifier) Supervise(ctx context.Context, node Runner) error {
	g, gctx := errgroup.WithContext(ctx)
	nctx, nodeDone := context.WithCancel(gctx)
	g.Go(func() error {
		defer nodeDone()
		return node.Run(gctx)
	})
	g.Go(func() error { return s.Run(nctx) })
	return g.Wait()
}
