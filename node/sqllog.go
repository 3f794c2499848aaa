package node

import (
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// RouteMySQLLog sends go-sql-driver/mysql's log (by default printf lines on stderr,
// outside the JSON log) to log, named "mysql". The driver copies its logger into each
// DSN config it parses, so call this once at start, before any DSN is parsed or
// connection opened.
func RouteMySQLLog(log *zap.Logger) error {
	if err := mysql.SetLogger(MySQLLogger{log.Named("mysql")}); err != nil {
		return fmt.Errorf("route mysql driver log: %w", err)
	}
	return nil
}

// MySQLLogger is a go-sql-driver/mysql Logger that writes zap fields: the driver's text
// becomes the message, its error arguments error fields. The driver logs connection
// trouble (bad idle connections, unexpected packets) that database/sql then retries,
// so lines are logged at warn.
type MySQLLogger struct{ Log *zap.Logger }

var _ mysql.Logger = MySQLLogger{}

// Print implements mysql.Logger.
func (m MySQLLogger) Print(v ...any) {
	var (
		text []string
		errs []error
	)
	for _, a := range v {
		switch a := a.(type) {
		case error:
			errs = append(errs, a)
		case nil:
		default:
			if s := strings.TrimSpace(fmt.Sprint(a)); s != "" {
				text = append(text, s)
			}
		}
	}
	msg := strings.TrimSpace(strings.TrimSuffix(strings.Join(text, " "), ":"))
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "[warn]"))
	if msg == "" {
		msg = "mysql driver error"
	}
	fields := make([]zap.Field, 0, len(errs))
	for i, err := range errs {
		key := "error"
		if i > 0 {
			key = fmt.Sprintf("error%d", i+1)
		}
		fields = append(fields, zap.String(key, err.Error()))
	}
	m.Log.Warn(msg, fields...)
}
