package mtls

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a generated cluster CA with certificates, in a temporary dir.
type pki struct {
	dir string
}

// newPKI generates a CA and a certificate for each of names.
func newPKI(t *testing.T, names ...string) pki {
	t.Helper()
	dir := t.TempDir()
	if _, err := Generate(dir, names, nil, 24*time.Hour); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return pki{dir: dir}
}

func (p pki) files(name string) Files {
	return Files{
		CA:   filepath.Join(p.dir, CAFile),
		Cert: filepath.Join(p.dir, name+".pem"),
		Key:  filepath.Join(p.dir, name+"-key.pem"),
	}
}

func (p pki) bundle(t *testing.T, name string) *Bundle {
	t.Helper()
	b, err := Load(p.files(name))
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	return b
}

func TestLoad(t *testing.T) {
	cluster := newPKI(t, "db1", "db2")
	other := newPKI(t, "db1")
	if _, err := generate(cluster.dir, []string{"old"}, nil, time.Now().Add(-48*time.Hour), 24*time.Hour); err != nil {
		t.Fatalf("generate expired: %v", err)
	}
	good := cluster.files("db1")
	missing := filepath.Join(cluster.dir, "nope.pem")

	tests := []struct {
		name     string
		files    Files
		wantErr  error  // nil: success
		wantFile string // must appear in the error
	}{
		{name: "good", files: good},
		{
			name:     "key mismatch",
			files:    Files{CA: good.CA, Cert: good.Cert, Key: cluster.files("db2").Key},
			wantErr:  ErrKeyMismatch,
			wantFile: cluster.files("db2").Key,
		},
		{
			name:     "other CA",
			files:    Files{CA: good.CA, Cert: other.files("db1").Cert, Key: other.files("db1").Key},
			wantErr:  ErrUntrusted,
			wantFile: other.files("db1").Cert,
		},
		{
			name:     "expired",
			files:    cluster.files("old"),
			wantErr:  ErrExpired,
			wantFile: cluster.files("old").Cert,
		},
		{
			name:     "CA is not PEM",
			files:    Files{CA: good.Key, Cert: good.Cert, Key: good.Key},
			wantErr:  ErrNoCertificate,
			wantFile: good.Key,
		},
		{
			name:     "key file holds a cert",
			files:    Files{CA: good.CA, Cert: good.Cert, Key: good.Cert},
			wantErr:  ErrNoKey,
			wantFile: good.Cert,
		},
		{
			name:     "missing CA",
			files:    Files{CA: missing, Cert: good.Cert, Key: good.Key},
			wantErr:  fs.ErrNotExist,
			wantFile: missing,
		},
		{
			name:     "missing cert",
			files:    Files{CA: good.CA, Cert: missing, Key: good.Key},
			wantErr:  fs.ErrNotExist,
			wantFile: missing,
		},
		{
			name:     "missing key",
			files:    Files{CA: good.CA, Cert: good.Cert, Key: missing},
			wantErr:  fs.ErrNotExist,
			wantFile: missing,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Load(tt.files)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got := b.ID(); got != "db1" {
					t.Errorf("ID() = %q, want db1", got)
				}
				return
			}
			t.Logf("Load: %v", err)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantFile) {
				t.Errorf("Load error %q does not name %s", err, tt.wantFile)
			}
		})
	}
}

// hsResult is both sides' view of a handshake.
type hsResult struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs a TLS handshake between the two configs over an in-memory pipe.
func handshake(t *testing.T, server, client *tls.Config) hsResult {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	_ = sc.SetDeadline(time.Now().Add(5 * time.Second))
	_ = cc.SetDeadline(time.Now().Add(5 * time.Second))
	type result struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err != nil {
			// Unblock the client, which may wait for the server's next flight.
			_ = sc.Close()
		}
		done <- result{err, s.ConnectionState()}
	}()
	c := tls.Client(cc, client)
	clientErr := c.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the server judges the client certificate after the client
		// has finished; a refusal shows on the client's first read.
		_ = cc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			clientErr = err
		}
	}
	if clientErr != nil {
		_ = cc.Close()
	}
	r := <-done
	return hsResult{serverErr: r.err, clientErr: clientErr, server: r.cs, client: c.ConnectionState()}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestConfigs(t *testing.T) {
	cluster := newPKI(t, "db1", "db2", "raftctl")
	other := newPKI(t, "db2")
	db1 := cluster.bundle(t, "db1")
	db2 := cluster.bundle(t, "db2")
	ctl := cluster.bundle(t, "raftctl")
	stranger := other.bundle(t, "db2")
	onlyDB := func(id string) bool { return strings.HasPrefix(id, "db") }
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		wantOK    bool
		wantErr   error // expected in the server's error (or the client's if the server has none)
		wantPeers [2]string
	}{
		{name: "mutual", server: db1.ServerConfig(true, nil), client: db2.ClientConfig("db1"), wantOK: true, wantPeers: [2]string{"db2", "db1"}},
		{name: "any server id", server: db1.ServerConfig(true, onlyDB), client: db2.ClientConfig(""), wantOK: true, wantPeers: [2]string{"db2", "db1"}},
		{name: "wrong server id", server: db1.ServerConfig(true, nil), client: db2.ClientConfig("db3"), wantErr: ErrPeerIdentity},
		{name: "server from other CA", server: stranger.ServerConfig(false, nil), client: db1.ClientConfig(""), wantErr: ErrUntrusted},
		{name: "client refused by allow", server: db1.ServerConfig(true, onlyDB), client: ctl.ClientConfig("db1"), wantErr: ErrPeerNotAllowed},
		{name: "client from other CA", server: db1.ServerConfig(false, nil), client: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: stranger.ClientConfig("").Certificates}},
		{name: "no client cert required", server: db1.ServerConfig(true, nil), client: noCert},
		{name: "no client cert optional", server: db1.ServerConfig(false, onlyDB), client: noCert, wantOK: true, wantPeers: [2]string{"", "db1"}},
		{name: "TLS 1.2 client", server: db1.ServerConfig(true, nil), client: &tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, Certificates: db2.ClientConfig("").Certificates}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, tt.server, tt.client)
			serr, cerr := r.serverErr, r.clientErr
			if tt.wantOK {
				if serr != nil || cerr != nil {
					t.Fatalf("handshake: server %v, client %v", serr, cerr)
				}
				sid, _ := PeerID(r.server)
				cid, _ := PeerID(r.client)
				if got := [2]string{sid, cid}; got != tt.wantPeers {
					t.Errorf("PeerID (server sees, client sees) = %q, want %q", got, tt.wantPeers)
				}
				return
			}
			if serr == nil && cerr == nil {
				t.Fatal("handshake succeeded, want failure")
			}
			if tt.wantErr != nil && !errors.Is(serr, tt.wantErr) && !errors.Is(cerr, tt.wantErr) {
				t.Errorf("handshake: server %v, client %v; want %v", serr, cerr, tt.wantErr)
			}
		})
	}
}

func TestPeerIDNoHandshake(t *testing.T) {
	if id, ok := PeerID(tls.ConnectionState{}); ok || id != "" {
		t.Errorf("PeerID(zero) = %q, %v; want \"\", false", id, ok)
	}
}
