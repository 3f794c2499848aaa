// Package hclogzap bridges hashicorp/go-hclog, which hashicorp/raft logs through, to zap.
package hclogzap

import (
	"fmt"
	"io"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger is an hclog.Logger that writes to a zap.Logger.
type Logger struct {
	z     *zap.Logger
	name  string
	level hclog.Level
	// implied are the arguments given to With, logged with every message.
	implied []any
}

var _ hclog.Logger = (*Logger)(nil)

// New returns an hclog.Logger writing to z at level and above. raft's DefaultConfig logs
// at DEBUG; pass hclog.Info or higher to keep a daemon's log readable.
func New(z *zap.Logger, level hclog.Level) *Logger {
	return &Logger{z: z, level: level}
}

// fields turns hclog's alternating key/value arguments (the logger's implied ones first)
// into typed zap fields, so the JSON log carries values, not fmt renderings. An error
// becomes an error field ("error" for hclog's "error" and "err" keys) that holds its
// message only; a fmt.Stringer its String(); an hclog.Format its formatted text. A key
// that is not a string is named arg<N> after its position, and an odd last argument
// "extra".
func (l *Logger) fields(args []any) []zap.Field {
	all := append(append([]any(nil), l.implied...), args...)
	fs := make([]zap.Field, 0, len(all)/2+1)
	for i := 0; i+1 < len(all); i += 2 {
		k, ok := all[i].(string)
		if !ok || k == "" {
			k = "arg" + strconv.Itoa(i/2)
		}
		fs = append(fs, field(k, all[i+1]))
	}
	if len(all)%2 == 1 {
		fs = append(fs, field("extra", all[len(all)-1]))
	}
	return fs
}

// plainError hides everything of an error but its message: zap writes an extra
// "<key>Verbose" field with the %+v rendering of errors that implement fmt.Formatter.
type plainError struct{ err error }

func (e plainError) Error() string { return e.err.Error() }
func (e plainError) Unwrap() error { return e.err }

// field converts one hclog argument into a zap field named key.
func field(key string, v any) zap.Field {
	switch v := v.(type) {
	case nil:
		return zap.Skip()
	case error:
		if key == "error" || key == "err" {
			return zap.Error(plainError{v})
		}
		return zap.NamedError(key, plainError{v})
	case hclog.Format:
		if len(v) == 0 {
			return zap.String(key, "")
		}
		format, ok := v[0].(string)
		if !ok {
			return zap.String(key, fmt.Sprint(v...))
		}
		return zap.String(key, fmt.Sprintf(format, v[1:]...))
	case string:
		return zap.String(key, v)
	case bool:
		return zap.Bool(key, v)
	case int:
		return zap.Int(key, v)
	case int64:
		return zap.Int64(key, v)
	case int32:
		return zap.Int32(key, v)
	case uint64:
		return zap.Uint64(key, v)
	case uint32:
		return zap.Uint32(key, v)
	case uint:
		return zap.Uint(key, v)
	case float64:
		return zap.Float64(key, v)
	case time.Duration:
		return zap.Duration(key, v)
	case time.Time:
		return zap.Time(key, v)
	case []string:
		return zap.Strings(key, v)
	case fmt.Stringer:
		return zap.Stringer(key, v)
	}
	return zap.Any(key, v)
}

func zapLevel(l hclog.Level) zapcore.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return zapcore.DebugLevel
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return zapcore.InfoLevel
	case hclog.Warn:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

// Log implements hclog.Logger.
func (l *Logger) Log(level hclog.Level, msg string, args ...any) {
	if level < l.level && level != hclog.NoLevel {
		return
	}
	if ce := l.z.Check(zapLevel(level), msg); ce != nil {
		ce.Write(l.fields(args)...)
	}
}

// Trace implements hclog.Logger.
func (l *Logger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *Logger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *Logger) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *Logger) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *Logger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (l *Logger) IsTrace() bool { return l.level <= hclog.Trace }

// IsDebug implements hclog.Logger.
func (l *Logger) IsDebug() bool { return l.level <= hclog.Debug }

// IsInfo implements hclog.Logger.
func (l *Logger) IsInfo() bool { return l.level <= hclog.Info }

// IsWarn implements hclog.Logger.
func (l *Logger) IsWarn() bool { return l.level <= hclog.Warn }

// IsError implements hclog.Logger.
func (l *Logger) IsError() bool { return l.level <= hclog.Error }

// ImpliedArgs implements hclog.Logger.
func (l *Logger) ImpliedArgs() []any { return l.implied }

// With implements hclog.Logger.
func (l *Logger) With(args ...any) hclog.Logger {
	c := *l
	c.implied = append(append([]any(nil), l.implied...), args...)
	return &c
}

// Name implements hclog.Logger.
func (l *Logger) Name() string { return l.name }

// Named implements hclog.Logger.
func (l *Logger) Named(name string) hclog.Logger {
	c := *l
	c.z = l.z.Named(name)
	c.name = name
	if l.name != "" {
		c.name = l.name + "." + name
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (l *Logger) ResetNamed(name string) hclog.Logger { return l.Named(name) }

// SetLevel implements hclog.Logger.
func (l *Logger) SetLevel(level hclog.Level) { l.level = level }

// GetLevel implements hclog.Logger.
func (l *Logger) GetLevel() hclog.Level { return l.level }

// StandardLogger implements hclog.Logger: each line written to the returned logger is
// logged at the level its "[ERR]"-style prefix names (info without one).
func (l *Logger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

// StandardWriter implements hclog.Logger, as StandardLogger does.
func (l *Logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{l}
}

// stdWriter logs each line written to it, at the level of its bracketed prefix.
type stdWriter struct{ l *Logger }

var stdLevels = []struct {
	prefix string
	level  hclog.Level
}{
	{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error},
}

func (w stdWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		level := hclog.Info
		for _, s := range stdLevels {
			if rest, ok := strings.CutPrefix(line, s.prefix); ok {
				line, level = strings.TrimSpace(rest), s.level
				break
			}
		}
		w.l.Log(level, line)
	}
	return len(p), nil
}
