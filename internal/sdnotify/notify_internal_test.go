package sdnotify

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRunSurvivesFailures: a failed delivery or a malformed watchdog timeout is logged and
// never ends Run; READY=1 and STOPPING=1 are still attempted.
func TestRunSurvivesFailures(t *testing.T) {
	tests := []struct {
		name        string
		sendErr     error
		watchdogErr error
		wantLog     string
		wantLevel   zapcore.Level
	}{
		{name: "socket gone", sendErr: errors.New("connection refused"), wantLog: "systemd notify", wantLevel: zapcore.WarnLevel},
		{name: "malformed WATCHDOG_USEC", watchdogErr: errors.New("invalid syntax"), wantLog: "systemd watchdog: no pings sent", wantLevel: zapcore.ErrorLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			var sent []string
			s := &Notifier{
				log: zap.New(core),
				send: func(state string) (bool, error) {
					sent = append(sent, state)
					return tt.sendErr == nil, tt.sendErr
				},
				watchdog: func() (time.Duration, error) { return 0, tt.watchdogErr },
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.Run(ctx); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if len(sent) != 2 || sent[0] != "READY=1" || sent[1] != "STOPPING=1" {
				t.Errorf("sent %q, want READY=1 then STOPPING=1", sent)
			}
			if got := logs.FilterMessage(tt.wantLog).FilterLevelExact(tt.wantLevel).Len(); got == 0 {
				t.Errorf("no %s log %q; logs: %v", tt.wantLevel, tt.wantLog, logs.All())
			}
		})
	}
}
