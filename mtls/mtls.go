// Package mtls authenticates keepraft's control plane with mutual TLS 1.3.
//
// Every node holds a certificate with a DNS SAN equal to its node id ("db1", "witness";
// other SANs such as "db1.example.com" may come with it); the operators' CLI holds one
// with SAN "raftctl". All of them chain to one cluster CA, configured as PEM files in
// cluster.tls. Load reads and checks those files into a Bundle, which hands out server
// and client tls.Configs that enforce the identity rules, and NewStreamLayer puts raft's
// NetworkTransport on top of them.
// Generate writes a small CA and per-name certificates for tests and small setups.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Sentinel errors, matched with errors.Is. The returned errors wrap them with the
// file or peer concerned.
var (
	// ErrNoCertificate is returned when a PEM file holds no certificate.
	ErrNoCertificate = errors.New("no PEM certificate")
	// ErrNoKey is returned when a key file holds no parsable private key.
	ErrNoKey = errors.New("no PEM private key")
	// ErrKeyMismatch is returned when the private key does not belong to the
	// certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrUntrusted is returned when a certificate does not chain to the cluster CA.
	ErrUntrusted = errors.New("certificate does not chain to the cluster CA")
	// ErrExpired is returned when a certificate's validity period has ended.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid is returned when a certificate's validity period has not begun.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrNoIdentity is returned when a certificate has no DNS SAN to serve as
	// identity.
	ErrNoIdentity = errors.New("certificate has no DNS SAN")
	// ErrNoPeerCertificate is returned by a handshake whose peer presented no
	// certificate although one is required.
	ErrNoPeerCertificate = errors.New("peer presented no certificate")
	// ErrPeerIdentity is returned by a handshake whose peer has an identity other
	// than the expected one.
	ErrPeerIdentity = errors.New("peer has the wrong identity")
	// ErrPeerNotAllowed is returned by a server handshake whose client identity is
	// refused by the allow function.
	ErrPeerNotAllowed = errors.New("peer identity not allowed")
	// ErrUnknownPeer is returned by StreamLayer.Dial for an address that belongs to
	// no known node.
	ErrUnknownPeer = errors.New("address belongs to no cluster node")
)

// Files are the PEM files of cluster.tls.
type Files struct{ CA, Cert, Key string }

// Bundle is a loaded CA pool plus this node's certificate.
type Bundle struct {
	pool *x509.CertPool
	cert tls.Certificate
	id   string
}

// Load reads and checks the files: the CA parses, the key matches the certificate, the
// certificate chains to the CA and is currently valid, and it has at least one DNS SAN.
// Errors name the file and what is wrong.
func Load(f Files) (*Bundle, error) {
	return load(f, time.Now())
}

func load(f Files, now time.Time) (*Bundle, error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", f.CA, err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}

	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("load cert %s: %w", f.Cert, err)
	}
	chain, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load cert %s: %w", f.Cert, err)
	}
	leaf := chain[0]

	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", f.Key, err)
	}
	if err := checkKey(keyPEM); err != nil {
		return nil, fmt.Errorf("load key %s: %w", f.Key, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load key %s for cert %s: %w: %w", f.Key, f.Cert, ErrKeyMismatch, err)
	}
	pair.Leaf = leaf

	if err := checkValidity(leaf, now); err != nil {
		return nil, fmt.Errorf("load cert %s: %w", f.Cert, err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("load cert %s with CA %s: %w: %w", f.Cert, f.CA, ErrUntrusted, err)
	}
	id := identity(leaf)
	if id == "" {
		return nil, fmt.Errorf("load cert %s: %w", f.Cert, ErrNoIdentity)
	}
	return &Bundle{pool: pool, cert: pair, id: id}, nil
}

// parseCerts returns every CERTIFICATE block of data, in order.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	return certs, nil
}

// checkKey reports whether data holds a parsable private key, so that a broken key
// file is told apart from a key that belongs to another certificate.
func checkKey(data []byte) error {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return ErrNoKey
		}
		switch block.Type {
		case "PRIVATE KEY":
			_, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			return wrapKeyErr(err)
		case "EC PRIVATE KEY":
			_, err := x509.ParseECPrivateKey(block.Bytes)
			return wrapKeyErr(err)
		case "RSA PRIVATE KEY":
			_, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			return wrapKeyErr(err)
		}
	}
}

func wrapKeyErr(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoKey, err)
	}
	return nil
}

// checkValidity reports whether now lies in c's validity period.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: not after %s", ErrExpired, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: not before %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// identity returns the first DNS SAN of c, or "" when it has none: the identity of a
// certificate that names no cluster member (an operator's).
func identity(c *x509.Certificate) string {
	if len(c.DNSNames) == 0 {
		return ""
	}
	return c.DNSNames[0]
}

// hasName reports whether one of c's DNS SANs is name. Every identity check against an
// expected id goes through it, so a certificate with SANs [db1.example.com, db1] is db1's.
func hasName(c *x509.Certificate, name string) bool {
	return name != "" && slices.Contains(c.DNSNames, name)
}

// pickIdentity returns the first DNS SAN of c that member accepts, and true; when none
// does (or member is nil) the first DNS SAN and false; "" when c has no DNS SAN.
func pickIdentity(c *x509.Certificate, member func(id string) bool) (string, bool) {
	if member != nil {
		for _, n := range c.DNSNames {
			if member(n) {
				return n, true
			}
		}
	}
	return identity(c), false
}

// ID returns this bundle's identity: the first DNS SAN of its certificate.
func (b *Bundle) ID() string { return b.id }

// Has reports whether one of the DNS SANs of this bundle's certificate is name.
func (b *Bundle) Has(name string) bool { return hasName(b.cert.Leaf, name) }

// Names returns the DNS SANs of this bundle's certificate, in order.
func (b *Bundle) Names() []string { return slices.Clone(b.cert.Leaf.DNSNames) }

// ServerConfig returns a TLS 1.3-only server config. With requireClient, a client
// certificate chaining to the CA is required (handshake fails otherwise); without, it is
// verified if given. allow (may be nil = any identity) is called with each DNS SAN of the
// verified client certificate in turn, and the handshake is refused when it returns false
// for all of them; a client that presents no certificate (possible only without
// requireClient) is not passed to allow.
func (b *Bundle) ServerConfig(requireClient bool, allow func(id string) bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.cert},
		ClientCAs:    b.pool,
		ClientAuth:   auth,
		// crypto/tls has verified the chain (ClientCAs, client-auth usage, validity)
		// by the time VerifyConnection runs, also on resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				if requireClient || len(cs.PeerCertificates) > 0 {
					return ErrNoPeerCertificate
				}
				return nil
			}
			leaf := cs.VerifiedChains[0][0]
			if identity(leaf) == "" {
				return fmt.Errorf("client %q: %w", leaf.Subject, ErrNoIdentity)
			}
			if allow == nil {
				return nil
			}
			if _, ok := pickIdentity(leaf, allow); !ok {
				return fmt.Errorf("client %s: %w", strings.Join(leaf.DNSNames, ","), ErrPeerNotAllowed)
			}
			return nil
		},
	}
}

// ClientConfig returns a TLS 1.3-only client config presenting this bundle's certificate
// and accepting only a server whose certificate chains to the CA and has a DNS SAN equal
// to serverID ("" = any identity from the CA). Any of the DNS SANs may match.
func (b *Bundle) ClientConfig(serverID string) *tls.Config {
	pool := b.pool
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.cert},
		ServerName:   serverID,
		// The stock verification matches ServerName against any SAN, and needs a
		// ServerName at all; VerifyConnection below does the full chain check
		// against the CA and compares the identity exactly.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNoPeerCertificate
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         pool,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return fmt.Errorf("server %q: %w: %w", identity(leaf), ErrUntrusted, err)
			}
			id := identity(leaf)
			if id == "" {
				return fmt.Errorf("server %q: %w", leaf.Subject, ErrNoIdentity)
			}
			if serverID != "" && !hasName(leaf, serverID) {
				return fmt.Errorf("server %s, want %s: %w", strings.Join(leaf.DNSNames, ","), serverID, ErrPeerIdentity)
			}
			return nil
		},
	}
}

// PeerID returns the identity (first DNS SAN) of the verified peer certificate of a
// finished handshake, and false when the peer presented none. For a client conn made
// with ClientConfig the chain was checked by its VerifyConnection, so the peer
// certificate is used even though crypto/tls records no verified chain there.
func PeerID(cs tls.ConnectionState) (string, bool) {
	return PeerIdentity(cs, nil)
}

// PeerIdentity is PeerID for a caller that knows the cluster's members: the identity is
// the first DNS SAN of the verified peer certificate that member accepts (a member id),
// or, when none does, the first DNS SAN (an operator's certificate). False when the peer
// presented no certificate or it has no DNS SAN.
func PeerIdentity(cs tls.ConnectionState, member func(id string) bool) (string, bool) {
	leaf := peerLeaf(cs)
	if leaf == nil {
		return "", false
	}
	id, _ := pickIdentity(leaf, member)
	return id, id != ""
}

// peerLeaf returns the verified peer certificate of a finished handshake, or nil.
func peerLeaf(cs tls.ConnectionState) *x509.Certificate {
	if !cs.HandshakeComplete {
		return nil
	}
	switch {
	case len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0:
		return cs.VerifiedChains[0][0]
	case len(cs.PeerCertificates) > 0:
		return cs.PeerCertificates[0]
	}
	return nil
}
