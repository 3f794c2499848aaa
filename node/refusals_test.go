package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestLogRefusals: 4xx answers are logged with the caller's address; others are not.
func TestLogRefusals(t *testing.T) {
	tests := []struct {
		code  int
		level string // "" = not logged
	}{
		{http.StatusOK, ""},
		{http.StatusUnauthorized, "warn"},
		{http.StatusBadRequest, "warn"},
		{http.StatusRequestEntityTooLarge, "warn"},
		{http.StatusConflict, "info"},
		{http.StatusPreconditionFailed, "info"},
		{http.StatusServiceUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			var buf bytes.Buffer
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel))
			h := logRefusals(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tt.code) }), log)
			req := httptest.NewRequest(http.MethodPost, "/v1/maintenance", strings.NewReader("{}"))
			req.RemoteAddr = "198.18.0.20:40000"
			h.ServeHTTP(httptest.NewRecorder(), req)
			out := buf.String()
			if tt.level == "" {
				if out != "" {
					t.Fatalf("logged %s", out)
				}
				return
			}
			for _, want := range []string{`"level":"` + tt.level + `"`, `"remote":"198.18.0.20:40000"`, `"path":"/v1/maintenance"`, `"method":"POST"`} {
				if !strings.Contains(out, want) {
					t.Fatalf("log %s lacks %s", out, want)
				}
			}
		})
	}
}
