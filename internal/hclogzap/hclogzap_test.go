package hclogzap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// verboseErr renders a fake stack trace under %+v, as pkg/errors-style errors do.
type verboseErr struct{}

func (verboseErr) Error() string { return "dial failed" }
func (verboseErr) Format(s fmt.State, verb rune) {
	if verb == 'v' && s.Flag('+') {
		fmt.Fprint(s, "dial failed\nSTACK main.go:1")
		return
	}
	fmt.Fprint(s, "dial failed")
}

type suffrage int

func (s suffrage) String() string { return [...]string{"Voter", "Nonvoter"}[s] }

func newJSON(level hclog.Level) (*Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = ""
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&buf), zapcore.DebugLevel)
	return New(zap.New(core), level), &buf
}

// lines decodes every line of buf as one JSON object; it fails on anything else.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not one JSON object: %q: %v", l, err)
		}
		delete(m, "caller")
		out = append(out, m)
	}
	return out
}

func TestFields(t *testing.T) {
	tests := []struct {
		name string
		log  func(l hclog.Logger)
		want map[string]any
	}{
		{"error keys become error", func(l hclog.Logger) {
			l.Error("failed to appendEntries to", "peer", "db2", "error", verboseErr{})
		}, map[string]any{"level": "error", "msg": "failed to appendEntries to", "peer": "db2", "error": "dial failed"}},
		{"err key", func(l hclog.Logger) { l.Warn("x", "err", errors.New("boom")) },
			map[string]any{"level": "warn", "msg": "x", "error": "boom"}},
		{"other error key", func(l hclog.Logger) { l.Info("x", "last-error", verboseErr{}) },
			map[string]any{"level": "info", "msg": "x", "last-error": "dial failed"}},
		{"typed values", func(l hclog.Logger) {
			l.Info("x", "n", 3, "ok", true, "took", 1500*time.Millisecond, "idx", uint64(7), "suffrage", suffrage(1))
		}, map[string]any{"level": "info", "msg": "x", "n": 3.0, "ok": true, "took": 1.5, "idx": 7.0, "suffrage": "Nonvoter"}},
		{"hclog.Fmt", func(l hclog.Logger) { l.Info("x", "what", hclog.Fmt("%d of %s", 2, "three")) },
			map[string]any{"level": "info", "msg": "x", "what": "2 of three"}},
		{"bad key and odd argument", func(l hclog.Logger) { l.Info("x", 42, "v", "lonely") },
			map[string]any{"level": "info", "msg": "x", "arg0": "v", "extra": "lonely"}},
		{"implied args and name", func(l hclog.Logger) { l.With("node", "db1").Named("net").Info("x", "a", "b") },
			map[string]any{"level": "info", "msg": "x", "logger": "net", "node": "db1", "a": "b"}},
		{"nil value", func(l hclog.Logger) { l.Info("x", "gone", nil) },
			map[string]any{"level": "info", "msg": "x"}},
		{"standard logger prefixes", func(l hclog.Logger) {
			l.StandardLogger(nil).Print("[ERR] raft-net: failed to accept connection")
		}, map[string]any{"level": "error", "msg": "raft-net: failed to accept connection"}},
		{"standard writer without prefix", func(l hclog.Logger) {
			fmt.Fprintln(l.StandardWriter(nil), "plain line")
		}, map[string]any{"level": "info", "msg": "plain line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf := newJSON(hclog.Info)
			tt.log(l)
			got := lines(t, buf)
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Fatalf("logged %v\nwant %v", got, tt.want)
			}
			if strings.Contains(buf.String(), "STACK") || strings.Contains(buf.String(), "Verbose") {
				t.Fatalf("verbose error rendering leaked: %s", buf.String())
			}
		})
	}
}

func TestLevelFilter(t *testing.T) {
	l, buf := newJSON(hclog.Info)
	l.Debug("hidden")
	l.Trace("hidden")
	l.Info("shown")
	if got := lines(t, buf); len(got) != 1 || got[0]["msg"] != "shown" {
		t.Fatalf("logged %v", got)
	}
}
