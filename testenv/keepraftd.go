package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/keepraft/keepraft/mtls"
	"github.com/keepraft/keepraft/probe"
)

// Keepraftd ports on every node.
const (
	RaftPort = 7000
	APIPort  = 7001
)

// KeepraftdOptions describe a keepraftd cluster in the lab (see [Lab.WriteKeepraftdConfigs]).
type KeepraftdOptions struct {
	// Nodes are the hosts that run keepraftd; default db1, db2, witness. Hosts named db*
	// are role database (they need a MariaDB started on them), the others role witness.
	Nodes []string
	// VRRP enables VRRP adverts (version 2, virtual_router_id 51, advert_int 1s).
	VRRP bool
	// AuthPass is vrrp.auth_pass; default "secret".
	AuthPass string
	// Extra is YAML appended verbatim to every node's config (e.g. a log: section).
	Extra string
	// Plaintext leaves cluster.tls out: Raft and the API run without mutual TLS. By
	// default the lab makes a CA and certificates (see [Lab.TLSDir]) and turns TLS on.
	Plaintext bool
	// KernelLease, when set, is vip.kernel_lease (the address's valid_lft).
	KernelLease time.Duration
	// SemiSync sets mysql.semi_sync on the database nodes.
	SemiSync bool
	// Flavor is mysql.flavor; default the flavor of the server started on the node (else
	// the lab's Options.Flavor, else mariadb).
	Flavor probe.Flavor
}

// KeepraftdNode is one node's generated files.
type KeepraftdNode struct {
	// Name is the node id and host name.
	Name string
	// Role is database or witness.
	Role string
	// ConfigPath is the YAML config for `keepraftd --config`.
	ConfigPath string
	// DataDir is node.data_dir.
	DataDir string
	// APIAddr is cluster.api_addr.
	APIAddr netip.AddrPort
	// Args are extra command-line arguments for keepraftd (e.g. --cpuprofile FILE).
	Args []string
}

var keepraftdTmpl = template.Must(template.New("keepraftd.yaml").Parse(`# written by keepraft testenv
node:
  id: {{.Node.Name}}
  role: {{.Node.Role}}
  data_dir: {{.Node.DataDir}}
cluster:
  raft_addr: {{.Raft}}
  api_addr: {{.API}}
  token_file: {{.TokenFile}}
{{- if .TLSDir}}
  tls: {ca_file: {{.TLSDir}}/ca.pem, cert_file: {{.TLSDir}}/{{.Node.Name}}.pem, key_file: {{.TLSDir}}/{{.Node.Name}}-key.pem}
{{- end}}
  peers:
{{- range .Peers}}
    - {id: {{.ID}}, raft_addr: {{.Raft}}, api_addr: {{.API}}}
{{- end}}
{{- if eq .Node.Role "database"}}
mysql:
  host: {{.Host}}
  port: 3306
  user: {{.User}}
  password_file: {{.PasswordFile}}
  flavor: {{.Flavor}}
{{- if .SemiSync}}
  semi_sync: true
{{- end}}
vip:
  interface: eth0
  addresses: [{{.VIP}}]
{{- if .KernelLease}}
  kernel_lease: {{.KernelLease}}
{{- end}}
vrrp:
  enabled: {{.VRRP}}
  version: 2
  virtual_router_id: 51
  priority: {{.Priority}}
  advert_int: 1s
  auth_pass: "{{.AuthPass}}"
failover:
  nopreempt: true
{{- end}}
{{.Extra}}`))

// WriteKeepraftdConfigs writes, under Dir/keepraft/, a bearer token file, the MySQL password
// file of the keepraft account, and one config per node: every node a Raft voter on
// <addr>:7000 with its API on <addr>:7001, database nodes (priority 100, 90, ... in order)
// probing their own MariaDB on port 3306 and owning the lab VIP on eth0.
func (l *Lab) WriteKeepraftdConfigs(opts KeepraftdOptions) ([]KeepraftdNode, error) {
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"db1", "db2", "witness"}
	}
	if opts.AuthPass == "" {
		opts.AuthPass = "secret"
	}
	dir := filepath.Join(l.Dir, "keepraft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write keepraftd configs: %w", err)
	}
	tokenFile := filepath.Join(dir, "token")
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("make token: %w", err)
	}
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(tok[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write token: %w", err)
	}
	passFile := filepath.Join(dir, "mysql.pass")
	if err := os.WriteFile(passFile, []byte(DaemonPass+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write mysql password: %w", err)
	}
	tlsDir := ""
	if !opts.Plaintext {
		tlsDir = l.TLSDir()
		if _, err := mtls.Generate(tlsDir, append(slices.Clone(opts.Nodes), "raftctl"), nil, 24*time.Hour); err != nil {
			return nil, fmt.Errorf("make the lab's certificates: %w", err)
		}
	}
	type peer struct {
		ID        string
		Raft, API netip.AddrPort
	}
	var peers []peer
	for _, n := range opts.Nodes {
		h := l.Host(n)
		if h == nil {
			return nil, fmt.Errorf("keepraftd node %s: no such host", n)
		}
		peers = append(peers, peer{n, netip.AddrPortFrom(h.Addr, RaftPort), netip.AddrPortFrom(h.Addr, APIPort)})
	}
	var nodes []KeepraftdNode
	prio := 100
	for i, n := range opts.Nodes {
		h := l.Host(n)
		node := KeepraftdNode{Name: n, Role: "witness", ConfigPath: filepath.Join(dir, n+".yaml"),
			DataDir: filepath.Join(dir, n), APIAddr: peers[i].API}
		if strings.HasPrefix(n, "db") {
			node.Role = "database"
		}
		flavor := opts.Flavor
		if flavor == "" {
			if m := l.MariaDB(n); m != nil {
				flavor = m.Flavor
			}
		}
		if flavor == "" {
			flavor = l.flavor
		}
		flavor, err := normFlavor(flavor)
		if err != nil {
			return nil, fmt.Errorf("keepraftd config for %s: %w", n, err)
		}
		var b strings.Builder
		if err := keepraftdTmpl.Execute(&b, map[string]any{
			"Flavor": flavor,
			"Node":   node, "Raft": peers[i].Raft, "API": peers[i].API, "TokenFile": tokenFile, "Peers": peers,
			"Host": h.Addr, "User": DaemonUser, "PasswordFile": passFile, "VIP": l.VIP, "VRRP": opts.VRRP,
			"Priority": prio, "AuthPass": opts.AuthPass, "Extra": opts.Extra, "TLSDir": tlsDir, "KernelLease": kernelLease(opts.KernelLease), "SemiSync": opts.SemiSync,
		}); err != nil {
			return nil, fmt.Errorf("render keepraftd config for %s: %w", n, err)
		}
		if node.Role == "database" {
			prio -= 10
		}
		if err := os.MkdirAll(node.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("keepraftd data dir for %s: %w", n, err)
		}
		if err := os.WriteFile(node.ConfigPath, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("write keepraftd config for %s: %w", n, err)
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

// TLSDir holds the lab's CA (ca.pem) and, per node and for "raftctl", NAME.pem and
// NAME-key.pem, written by [Lab.WriteKeepraftdConfigs] unless Plaintext.
func (l *Lab) TLSDir() string { return filepath.Join(l.Dir, "keepraft", "tls") }

// ClientTLS returns the TLS client configuration of the lab's "raftctl" certificate, for
// tests that call the API; nil when the lab runs plaintext.
func (l *Lab) ClientTLS() (*tls.Config, error) {
	dir := l.TLSDir()
	if _, err := os.Stat(filepath.Join(dir, "raftctl.pem")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	b, err := mtls.Load(mtls.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "raftctl.pem"), Key: filepath.Join(dir, "raftctl-key.pem")})
	if err != nil {
		return nil, fmt.Errorf("lab client certificate: %w", err)
	}
	return b.ClientConfig(""), nil
}

// TokenPath is the bearer token file written by [Lab.WriteKeepraftdConfigs].
func (l *Lab) TokenPath() string { return filepath.Join(l.Dir, "keepraft", "token") }

// StartKeepraftd runs `bin --config <node config>` inside the node's namespace, logging to
// Dir/logs/keepraftd-<node>.log.
func (l *Lab) StartKeepraftd(ctx context.Context, bin string, node KeepraftdNode) (*Proc, error) {
	h := l.Host(node.Name)
	if h == nil {
		return nil, fmt.Errorf("start keepraftd %s: no such host", node.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start keepraftd %s: %w", node.Name, err)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, fmt.Errorf("start keepraftd %s: %w", node.Name, err)
	}
	args := append([]string{abs, "--config", node.ConfigPath}, node.Args...)
	return l.Spawn(h, "keepraftd-"+node.Name, args, nil)
}

// kernelLease renders vip.kernel_lease ("" when unset).
func kernelLease(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}
