// Package watchdog fences the local MySQL server when the owner's lease runs out and
// keepraftd itself cannot do it: frozen (SIGSTOP, a stuck syscall, a long pause), killed,
// or cut off from every peer while frozen. It is keepraft's answer to Patroni's watchdog
// device, without rebooting the host.
//
// keepraftd starts the watchdog as a separate process (keepraftd fence-watchdog) and
// writes to it over a pipe: "arm D" before it opens writes and after every lease
// renewal, where D is the lease's expiry on CLOCK_BOOTTIME in nanoseconds, and
// "disarm" once its server is fenced. When the clock passes an armed deadline, the
// watchdog sets read_only=1 and kills the application connections through its own
// connection to the server, retrying until that works or it is disarmed. When the pipe
// closes (keepraftd exited, killed or not), an armed watchdog fences at once, then exits;
// a disarmed one just exits.
//
// Both processes read the same clock, so the deadline is exact: the watchdog needs no
// message to arrive in time, only the last one to have been written.
//
// A renewal that only moves the deadline later, made before the deadline the watchdog
// holds has passed, goes through a shared page instead of the pipe (see [Shared]): the
// watchdog reads the page when its deadline comes and sleeps on to the newer one. Every
// other change (the first arm, a shorter deadline, a renewal after the deadline passed,
// the disarm) is a message, which the watchdog acts on at once.
package watchdog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Fencer fences the local server (read_only=1, application connections killed).
type Fencer interface {
	Fence(ctx context.Context) (string, error)
}

// Timing constants.
const (
	// fenceTimeout bounds one fence attempt.
	fenceTimeout = 2 * time.Second
	// retryEvery is the pause between failed fence attempts.
	retryEvery = 200 * time.Millisecond
	// exitFenceFor bounds the attempts after keepraftd exited: the server may be gone too.
	exitFenceFor = 10 * time.Second
)

// message is one decoded line.
type message struct {
	arm      bool
	deadline time.Duration
}

// Encode returns the line for arming at deadline (boottime), or disarming when arm is false.
func Encode(arm bool, deadline time.Duration) string {
	if !arm {
		return "disarm\n"
	}
	return "arm " + strconv.FormatInt(int64(deadline), 10) + "\n"
}

func decode(line string) (message, error) {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "disarm":
		return message{}, nil
	case len(f) == 2 && f[0] == "arm":
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ns <= 0 {
			return message{}, fmt.Errorf("arm: bad deadline %q", f[1])
		}
		return message{arm: true, deadline: time.Duration(ns)}, nil
	}
	return message{}, fmt.Errorf("unknown message %q", line)
}

// Serve runs the watchdog until in closes (an armed watchdog then fences at once) or ctx ends.
// now is CLOCK_BOOTTIME. latest, when not nil, reads the expiry keepraftd last published
// in the shared page; an armed watchdog whose deadline has passed takes it instead when
// it is later. A malformed message is treated as the worst case: the watchdog fences at
// once, since it can no longer know the lease.
func Serve(ctx context.Context, in io.ReadCloser, latest func() time.Duration, f Fencer, now func() time.Duration, log *zap.Logger) error {
	msgs := make(chan message)
	readErr := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	var reader sync.WaitGroup
	defer reader.Wait()
	defer func() { _ = in.Close() }() // ends the reader's Scan
	defer stop()
	reader.Go(func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			m, err := decode(sc.Text())
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-rctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	})

	var (
		armed    bool
		deadline time.Duration
		fenced   bool // fenced for the current deadline
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		if armed && !fenced {
			wait = max(deadline-now(), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if !m.arm {
				if armed {
					log.Debug("disarmed")
				}
				armed, fenced = false, false
				continue
			}
			if m.deadline > now() {
				fenced = false // a renewal: keepraftd may open writes again under it
			}
			if !armed {
				log.Info("armed: the server is fenced if the lease is not renewed", zap.Duration("left", m.deadline-now()))
			}
			armed, deadline = true, m.deadline
		case err := <-readErr:
			if err != nil {
				log.Error("keepraftd sent a message the watchdog cannot read: fencing now", zap.Error(err))
				fenceUntil(ctx, f, now()+exitFenceFor, now, log, "unreadable message")
				return err
			}
			if !armed || fenced {
				log.Info("keepraftd closed the pipe; no lease pending", zap.Bool("fenced", fenced))
				return nil
			}
			// Nobody renews the lease any more: fence now rather than at its expiry, so
			// a keepraftd restarted at once reopens writes under its own watchdog
			// instead of being fenced by this one a moment later.
			log.Warn("keepraftd exited with writes open: fencing now", zap.Duration("lease_left", deadline-now()))
			fenceUntil(ctx, f, now()+exitFenceFor, now, log, "keepraftd exited with writes open")
			return nil
		case <-timer.C:
			if !armed || fenced || now() < deadline {
				continue
			}
			if latest != nil {
				if l := latest(); l > deadline {
					deadline = l // renewed through the shared page
					continue
				}
			}
			log.Warn("lease expired without a renewal from keepraftd: fencing the server", zap.Duration("late", now()-deadline))
			fenced = fenceOnce(ctx, f, log, "lease expired")
			if !fenced {
				// Retry soon; a renewal or a disarm in the meantime takes precedence.
				deadline = now() + retryEvery
			}
		}
	}
}

// fenceOnce makes one bounded attempt.
func fenceOnce(ctx context.Context, f Fencer, log *zap.Logger, why string) bool {
	fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	g, err := f.Fence(fctx)
	if err != nil {
		log.Error("fence the server", zap.String("reason", why), zap.Error(err))
		return false
	}
	log.Warn("server fenced by the watchdog (read_only=1)", zap.String("reason", why), zap.String("gtid", g))
	return true
}

// fenceUntil retries fenceOnce every retryEvery until it works, ctx ends or the clock
// passes until.
func fenceUntil(ctx context.Context, f Fencer, until time.Duration, now func() time.Duration, log *zap.Logger, why string) bool {
	for !fenceOnce(ctx, f, log, why) {
		if now() >= until || ctx.Err() != nil {
			log.Error("gave up fencing the server", zap.String("reason", why))
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(retryEvery):
		}
	}
	return true
}
