package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// CAFile is the name of the CA certificate written by Generate.
	CAFile = "ca.pem"
	// CAKeyFile is the name of the CA private key written by Generate.
	CAKeyFile = "ca-key.pem"
	// clockSkew backdates NotBefore so that peers with a slightly late clock accept
	// a fresh certificate.
	clockSkew = 5 * time.Minute
)

// ErrBadName is returned by Generate for a name that cannot be a file name or
// identity.
var ErrBadName = errors.New("invalid certificate name")

// Generate writes a small CA (ca.pem, ca-key.pem; reused if both already exist in dir) and
// one certificate per name (NAME.pem, NAME-key.pem; ECDSA P-256, SAN DNS=name plus, for
// names that look like host:port or IPs given in ips[name], IP SANs) valid for validity.
// Keys are written 0600, the dir is created 0700. It returns the written paths. A new
// CA is valid for validity too; with a reused CA, a certificate's validity ends no
// later than the CA's.
func Generate(dir string, names []string, ips map[string][]net.IP, validity time.Duration) ([]string, error) {
	return generate(dir, names, ips, time.Now(), validity)
}

// generate is Generate with the start of validity given, so tests can make expired
// certificates.
func generate(dir string, names []string, ips map[string][]net.IP, now time.Time, validity time.Duration) ([]string, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("generate in %s: validity %s is not positive", dir, validity)
	}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, fmt.Errorf("generate in %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dir %s: %w", dir, err)
	}

	var written []string
	caCert, caKey, err := loadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		caCert, caKey, err = newCA(now, validity)
		if err != nil {
			return nil, fmt.Errorf("generate CA in %s: %w", dir, err)
		}
		paths, err := writePair(dir, "ca", caCert.Raw, caKey)
		written = append(written, paths...)
		if err != nil {
			return written, err
		}
	} else if err != nil {
		return nil, err
	}

	for _, n := range names {
		der, key, err := newLeaf(n, ips[n], caCert, caKey, now, validity)
		if err != nil {
			return written, fmt.Errorf("generate cert %s in %s: %w", n, dir, err)
		}
		paths, err := writePair(dir, n, der, key)
		written = append(written, paths...)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// checkName refuses names that would escape dir or overwrite the CA.
func checkName(n string) error {
	switch {
	case n == "", n == ".", n == "..", strings.ContainsAny(n, `/\`):
		return fmt.Errorf("%w: %q", ErrBadName, n)
	case n == "ca" || n == "ca-key" || strings.HasSuffix(n, "-key"):
		return fmt.Errorf("%w: %q clashes with the CA or key file names", ErrBadName, n)
	}
	return nil
}

// loadCA reads an existing CA from dir; the error wraps fs.ErrNotExist when either
// file is missing.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA key %s for %s: %w", keyPath, certPath, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("load CA key %s: %T cannot sign", keyPath, pair.PrivateKey)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("load CA %s: %w", certPath, err)
		}
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("load CA %s: not a CA certificate", certPath)
	}
	if err := checkValidity(cert, time.Now()); err != nil {
		return nil, nil, fmt.Errorf("load CA %s: %w", certPath, err)
	}
	return cert, signer, nil
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keepraft cluster CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// newLeaf issues a server-and-client certificate for name.
func newLeaf(name string, extra []net.IP, ca *x509.Certificate, caKey crypto.Signer, now time.Time, validity time.Duration) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
		IPAddresses:  sanIPs(name, extra),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// sanIPs returns the IP of name when it is an IP or an IP:port, followed by extra,
// without duplicates.
func sanIPs(name string, extra []net.IP) []net.IP {
	var out []net.IP
	add := func(ip net.IP) {
		for _, have := range out {
			if have.Equal(ip) {
				return
			}
		}
		out = append(out, ip)
	}
	host := name
	if h, _, err := net.SplitHostPort(name); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); ip != nil {
		add(ip)
	}
	for _, ip := range extra {
		if ip != nil {
			add(ip)
		}
	}
	return out
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// writePair writes NAME.pem and NAME-key.pem into dir and returns the paths written.
func writePair(dir, name string, der []byte, key crypto.Signer) ([]string, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key %s: %w", name, err)
	}
	certPath := filepath.Join(dir, name+".pem")
	keyPath := filepath.Join(dir, name+"-key.pem")
	// The key first: a certificate without its key is of no use.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return []string{keyPath}, err
	}
	return []string{certPath, keyPath}, nil
}

// writeFile replaces path atomically with data and mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
