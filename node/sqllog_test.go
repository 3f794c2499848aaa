package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// entry is one decoded line of a capture logger.
type entry struct {
	Level, Logger, Msg string
	Fields             map[string]any
}

// captureLog returns a JSON zap logger and a function that decodes what it logged.
func captureLog(t *testing.T) (*zap.Logger, func() []entry) {
	t.Helper()
	var buf bytes.Buffer
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = ""
	z := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&buf), zapcore.DebugLevel))
	return z, func() []entry {
		var out []entry
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not one JSON object: %q: %v", l, err)
			}
			e := entry{Fields: map[string]any{}}
			for k, v := range m {
				switch k {
				case "level":
					e.Level = v.(string)
				case "logger":
					e.Logger = v.(string)
				case "msg":
					e.Msg = v.(string)
				default:
					e.Fields[k] = v
				}
			}
			out = append(out, e)
		}
		return out
	}
}

func TestMySQLLoggerFields(t *testing.T) {
	tests := []struct {
		name    string
		give    []any
		wantMsg string
		want    map[string]any
	}{
		{"text and error", []any{"closing bad idle connection: ", errors.New("EOF")}, "closing bad idle connection",
			map[string]any{"error": "EOF"}},
		{"error alone", []any{mysql.ErrMalformPkt}, "mysql driver error",
			map[string]any{"error": mysql.ErrMalformPkt.Error()}},
		{"warn prefix", []any{"[warn] unexpected sequence nr: expected 1, got 2"}, "unexpected sequence nr: expected 1, got 2",
			map[string]any{}},
		{"two errors and a value", []any{"auth plugin", 7, errors.New("a"), fmt.Errorf("b: %w", errors.New("c"))}, "auth plugin 7",
			map[string]any{"error": "a", "error2": "b: c"}},
		{"nothing", nil, "mysql driver error", map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, logged := captureLog(t)
			MySQLLogger{z}.Print(tt.give...)
			all := logged()
			if len(all) != 1 {
				t.Fatalf("logged %d entries", len(all))
			}
			e := all[0]
			if e.Msg != tt.wantMsg || e.Level != "warn" {
				t.Fatalf("logged %s %q, want warn %q", e.Level, e.Msg, tt.wantMsg)
			}
			if got := e.Fields; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("fields %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRouteMySQLLog checks that a DSN parsed after RouteMySQLLog logs through zap.
func TestRouteMySQLLog(t *testing.T) {
	t.Cleanup(func() { _ = mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.Ldate|log.Ltime)) })
	z, logged := captureLog(t)
	if err := RouteMySQLLog(z); err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseDSN("keepraft@tcp(127.0.0.1:3306)/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger.Print("closing connection:", errors.New("broken pipe"))
	all := logged()
	if len(all) != 1 || all[0].Logger != "mysql" || all[0].Msg != "closing connection" || all[0].Fields["error"] != "broken pipe" {
		t.Fatalf("logged %+v", all)
	}
}
