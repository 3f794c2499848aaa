// Package hclogzap bridges hashicorp/go-hclog, which hashicorp/raft logs through, to zap.
package hclogzap

import (
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger is an hclog.Logger that writes to a zap.Logger.
type Logger struct {
	z     *zap.Logger
	name  string
	level hclog.Level
	args  []any
}

var _ hclog.Logger = (*Logger)(nil)

// New returns an hclog.Logger writing to z at level and above. raft's DefaultConfig logs
// at DEBUG; pass hclog.Info or higher to keep a daemon's log readable.
func New(z *zap.Logger, level hclog.Level) *Logger {
	return &Logger{z: z, level: level}
}

func (l *Logger) fields(args []any) []zap.Field {
	all := append(append([]any(nil), l.args...), args...)
	fs := make([]zap.Field, 0, len(all)/2+1)
	for i := 0; i+1 < len(all); i += 2 {
		k, ok := all[i].(string)
		if !ok {
			k = "arg"
		}
		fs = append(fs, zap.Any(k, all[i+1]))
	}
	if len(all)%2 == 1 {
		fs = append(fs, zap.Any("extra", all[len(all)-1]))
	}
	return fs
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
func (l *Logger) ImpliedArgs() []any { return l.args }

// With implements hclog.Logger.
func (l *Logger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
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

// StandardLogger implements hclog.Logger.
func (l *Logger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(l.z)
}

// StandardWriter implements hclog.Logger.
func (l *Logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return zap.NewStdLog(l.z).Writer()
}
