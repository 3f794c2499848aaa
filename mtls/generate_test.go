package mtls

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ips := map[string][]net.IP{"db1": {net.ParseIP("10.0.0.1")}}
	paths, err := Generate(dir, []string{"db1", "witness", "127.0.0.1:7000"}, ips, time.Hour)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	want := []string{CAFile, CAKeyFile, "db1.pem", "db1-key.pem", "witness.pem", "witness-key.pem", "127.0.0.1:7000.pem", "127.0.0.1:7000-key.pem"}
	for i := range want {
		want[i] = filepath.Join(dir, want[i])
	}
	slices.Sort(want)
	slices.Sort(paths)
	if !slices.Equal(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v, %v; want mode 0700", fi.Mode(), err)
	}

	tests := []struct {
		name   string
		wantIP []string
	}{
		{name: "db1", wantIP: []string{"10.0.0.1"}},
		{name: "witness"},
		{name: "127.0.0.1:7000", wantIP: []string{"127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, tt.name+".pem"), Key: filepath.Join(dir, tt.name+"-key.pem")}
			for path, mode := range map[string]os.FileMode{f.Key: 0o600, f.Cert: 0o644} {
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
					t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, mode)
				}
			}
			b, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if b.ID() != tt.name {
				t.Errorf("ID() = %q, want %q", b.ID(), tt.name)
			}
			leaf := b.cert.Leaf
			if !slices.Equal(leaf.DNSNames, []string{tt.name}) {
				t.Errorf("DNS SANs = %q, want [%q]", leaf.DNSNames, tt.name)
			}
			var gotIP []string
			for _, ip := range leaf.IPAddresses {
				gotIP = append(gotIP, ip.String())
			}
			if !slices.Equal(gotIP, tt.wantIP) {
				t.Errorf("IP SANs = %q, want %q", gotIP, tt.wantIP)
			}
			if d := leaf.NotAfter.Sub(leaf.NotBefore); d < time.Hour || d > time.Hour+clockSkew {
				t.Errorf("validity %s, want about 1h", d)
			}
		})
	}

	t.Run("rerun reuses CA", func(t *testing.T) {
		caBefore, err := os.ReadFile(filepath.Join(dir, CAFile))
		if err != nil {
			t.Fatal(err)
		}
		paths, err := Generate(dir, []string{"db2"}, nil, time.Hour)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		want := []string{filepath.Join(dir, "db2.pem"), filepath.Join(dir, "db2-key.pem")}
		if !slices.Equal(paths, want) {
			t.Errorf("paths = %q, want %q", paths, want)
		}
		caAfter, err := os.ReadFile(filepath.Join(dir, CAFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(caBefore, caAfter) {
			t.Error("ca.pem was rewritten")
		}
		// The new certificate chains to the old CA.
		if _, err := Load(Files{CA: filepath.Join(dir, CAFile), Cert: want[0], Key: want[1]}); err != nil {
			t.Errorf("Load db2: %v", err)
		}
	})
}

func TestGenerateRefuses(t *testing.T) {
	tests := []struct {
		name     string
		names    []string
		validity time.Duration
		wantErr  error
	}{
		{name: "empty name", names: []string{""}, validity: time.Hour, wantErr: ErrBadName},
		{name: "path", names: []string{"../db1"}, validity: time.Hour, wantErr: ErrBadName},
		{name: "CA name", names: []string{"ca"}, validity: time.Hour, wantErr: ErrBadName},
		{name: "key suffix", names: []string{"db1-key"}, validity: time.Hour, wantErr: ErrBadName},
		{name: "no validity", names: []string{"db1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			_, err := Generate(dir, tt.names, nil, tt.validity)
			if err == nil {
				t.Fatal("Generate succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Generate error = %v, want %v", err, tt.wantErr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("Generate created %s despite the error", dir)
			}
		})
	}
}

func TestGenerateCertUsage(t *testing.T) {
	p := newPKI(t, "db1")
	leaf := p.bundle(t, "db1").cert.Leaf
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			t.Errorf("ExtKeyUsage %v lacks %v", leaf.ExtKeyUsage, u)
		}
	}
}
