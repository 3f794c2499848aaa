// Package config owns keepraftd's configuration file: strict YAML decoding, defaults, and
// validation whose every error names the key at fault.
package config

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keepraft/keepraft/cmdline"
)

// Config is a validated node configuration.
type Config struct {
	Node     Node
	Cluster  Cluster
	MySQL    MySQL
	VIP      VIP
	VRRP     VRRP
	Failover Failover
	Notify   Notify
	Log      Log
}

// Node is the node section.
type Node struct {
	ID      string
	Role    string // "database" or "witness"
	DataDir string
}

// Peer is one voter.
type Peer struct{ ID, RaftAddr, APIAddr string }

// Cluster is the cluster section.
type Cluster struct {
	RaftAddr  string
	APIAddr   string
	Peers     []Peer
	TokenFile string
	// TLS, when set, makes the control plane mutual TLS: Raft and the admin API.
	TLS  *TLS
	Raft Raft
}

// TLS holds the PEM files of cluster.tls.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// Raft holds the hashicorp/raft timings.
type Raft struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	JournalRetain      int
}

// MySQL is the mysql section.
type MySQL struct {
	DSN          string
	Host         string
	Port         int
	User         string
	PasswordFile string
	Flavor       string
	Interval     time.Duration
	Timeout      time.Duration
	Rise, Fall   int
	WriteCheck   bool
	CheckScript  string
	AppUsers     []string
	// SemiSync (mysql.semi_sync) lets keepraft keep the semi-sync master side on the
	// owner only: on before it opens writes, off on a fenced standby, whose SQL thread
	// would otherwise wait for acknowledgements of what it applies.
	SemiSync bool
}

// VIP is the vip section.
type VIP struct {
	Interface    string
	Addresses    []netip.Prefix
	Label        string
	GARPRepeat   int
	GARPInterval time.Duration
	KernelLease  time.Duration
	// Fence is the millisecond kernel lease of the VIPs' traffic: "auto" (nftables when
	// the kernel has the netdev egress hook, otherwise valid_lft only, with a warning),
	// "nftables" (required) or "off".
	Fence string
}

// The vip.fence values.
const (
	FenceAuto     = "auto"
	FenceNftables = "nftables"
	FenceOff      = "off"
)

// VRRP is the vrrp section.
type VRRP struct {
	Enabled         bool
	Version         int
	VirtualRouterID int
	Priority        int
	AdvertInt       time.Duration
	AuthPass        string
}

// Failover is the failover section.
type Failover struct {
	Nopreempt        bool
	Lease            time.Duration
	CatchupTimeout   time.Duration
	OnCatchupTimeout string // "promote" or "hold"
	FenceReadOnly    bool
	Damping          time.Duration
}

// Notify holds the keepalived-compatible hook scripts and how they are called.
type Notify struct {
	// Master, Backup and Fault run when this node enters that state, like keepalived's
	// notify_master, notify_backup and notify_fault: with their own arguments only.
	Master, Backup, Fault string
	// Any runs on every state change after the state's own hook, like keepalived's
	// notify: with INSTANCE <Instance> <MASTER|BACKUP|FAULT> <priority> appended.
	Any string
	// Instance is the instance name passed to Any (keepalived's vrrp_instance name).
	Instance string
	// Convention is NotifyKeepalived (split the command line, no shell) or NotifyShell
	// (/bin/sh -c, keepraft's calling convention before keepalived's became the default).
	Convention string
	// Timeout bounds one hook run; the hook's process group is killed when it expires.
	Timeout time.Duration
}

// The notify.convention values.
const (
	NotifyKeepalived = "keepalived"
	NotifyShell      = "shell"
)

// Log is the log section.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // json or console
}

// IsDatabase reports whether the node runs next to mysqld and may own the VIP.
func (c *Config) IsDatabase() bool { return c.Node.Role == "database" }

// Voters returns the number of voters.
func (c *Config) Voters() int { return len(c.Cluster.Peers) }

// Token reads the bearer token from cluster.token_file.
func (c *Config) Token() (string, error) {
	return readSecret("cluster.token_file", c.Cluster.TokenFile)
}

// Password reads the MySQL password from mysql.password_file ("" when unset).
func (c *Config) Password() (string, error) {
	if c.MySQL.PasswordFile == "" {
		return "", nil
	}
	return readSecret("mysql.password_file", c.MySQL.PasswordFile)
}

// privateFile refuses a secret that group or others may read.
func privateFile(key, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %s has mode %04o: group or others can read it; chmod 600 it", key, path, perm)
	}
	return nil
}

func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return s, nil
}

// raw mirrors the YAML file; every field is a string or plain value so validation can
// name the key of any bad value.
type raw struct {
	Node     rawNode     `yaml:"node"`
	Cluster  rawCluster  `yaml:"cluster"`
	MySQL    rawMySQL    `yaml:"mysql"`
	VIP      rawVIP      `yaml:"vip"`
	VRRP     rawVRRP     `yaml:"vrrp"`
	Failover rawFailover `yaml:"failover"`
	Notify   rawNotify   `yaml:"notify"`
	Log      rawLog      `yaml:"log"`
}

type rawNode struct {
	ID      string `yaml:"id"`
	Role    string `yaml:"role"`
	DataDir string `yaml:"data_dir"`
}

type rawPeer struct {
	ID       string `yaml:"id"`
	RaftAddr string `yaml:"raft_addr"`
	APIAddr  string `yaml:"api_addr"`
}

type rawCluster struct {
	RaftAddr  string    `yaml:"raft_addr"`
	APIAddr   string    `yaml:"api_addr"`
	Peers     []rawPeer `yaml:"peers"`
	TokenFile string    `yaml:"token_file"`
	TLS       *rawTLS   `yaml:"tls"`
	Raft      rawRaft   `yaml:"raft"`
}

type rawTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

type rawRaft struct {
	HeartbeatTimeout   string `yaml:"heartbeat_timeout"`
	ElectionTimeout    string `yaml:"election_timeout"`
	LeaderLeaseTimeout string `yaml:"leader_lease_timeout"`
	CommitTimeout      string `yaml:"commit_timeout"`
	SnapshotThreshold  *int   `yaml:"snapshot_threshold"`
	SnapshotInterval   string `yaml:"snapshot_interval"`
	JournalRetain      *int   `yaml:"journal_retain"`
}

type rawMySQL struct {
	DSN          string   `yaml:"dsn"`
	Host         string   `yaml:"host"`
	Port         *int     `yaml:"port"`
	User         string   `yaml:"user"`
	PasswordFile string   `yaml:"password_file"`
	Flavor       string   `yaml:"flavor"`
	Interval     string   `yaml:"interval"`
	Timeout      string   `yaml:"timeout"`
	Rise         *int     `yaml:"rise"`
	Fall         *int     `yaml:"fall"`
	WriteCheck   *bool    `yaml:"write_check"`
	CheckScript  string   `yaml:"check_script"`
	AppUsers     []string `yaml:"app_users"`
	SemiSync     *bool    `yaml:"semi_sync"`
}

type rawVIP struct {
	Interface    string   `yaml:"interface"`
	Addresses    []string `yaml:"addresses"`
	Label        string   `yaml:"label"`
	GARPRepeat   *int     `yaml:"garp_repeat"`
	GARPInterval string   `yaml:"garp_interval"`
	KernelLease  string   `yaml:"kernel_lease"`
	Fence        string   `yaml:"fence"`
}

type rawVRRP struct {
	Enabled         *bool  `yaml:"enabled"`
	Version         *int   `yaml:"version"`
	VirtualRouterID *int   `yaml:"virtual_router_id"`
	Priority        *int   `yaml:"priority"`
	AdvertInt       string `yaml:"advert_int"`
	AuthPass        string `yaml:"auth_pass"`
}

type rawFailover struct {
	Nopreempt        *bool  `yaml:"nopreempt"`
	Lease            string `yaml:"lease"`
	CatchupTimeout   string `yaml:"catchup_timeout"`
	OnCatchupTimeout string `yaml:"on_catchup_timeout"`
	FenceReadOnly    *bool  `yaml:"fence_read_only"`
	Damping          string `yaml:"damping"`
}

type rawNotify struct {
	Master     string `yaml:"master"`
	Backup     string `yaml:"backup"`
	Fault      string `yaml:"fault"`
	Any        string `yaml:"any"`
	Instance   string `yaml:"instance"`
	Convention string `yaml:"convention"`
	Timeout    string `yaml:"timeout"`
}

type rawLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns the defaults every unset key takes.
func Default() Config {
	return Config{
		Node: Node{Role: "database"},
		Cluster: Cluster{Raft: Raft{
			HeartbeatTimeout:   2 * time.Second,
			ElectionTimeout:    2 * time.Second,
			LeaderLeaseTimeout: time.Second,
			CommitTimeout:      time.Second,
			SnapshotThreshold:  1024,
			SnapshotInterval:   30 * time.Second,
			JournalRetain:      10000,
		}},
		MySQL: MySQL{Port: 3306, Flavor: "mariadb", Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2},
		VIP:   VIP{GARPRepeat: 3, GARPInterval: 20 * time.Millisecond, KernelLease: time.Second, Fence: FenceAuto},
		VRRP:  VRRP{Enabled: false, Version: 2, VirtualRouterID: 51, Priority: 100, AdvertInt: time.Second},
		Failover: Failover{
			Nopreempt: true, Lease: 500 * time.Millisecond, CatchupTimeout: 5 * time.Second,
			OnCatchupTimeout: "promote", FenceReadOnly: true, Damping: 30 * time.Second,
		},
		Notify: Notify{Instance: "keepraft", Convention: NotifyKeepalived, Timeout: 10 * time.Second},
		Log:    Log{Level: "info", Format: "json"},
	}
}

// Option changes what [Load] and [Parse] check.
type Option func(*options)

type options struct {
	offline     bool
	singleVoter bool
}

// Offline skips every check that reads the host rather than the file: the secret files
// (cluster.token_file, cluster.tls.key_file, mysql.password_file) are neither read nor
// stat'ed, and the programs of mysql.check_script and notify.* are not looked up. That
// lets `keepraftd check-config --offline` validate a config while building a package, on
// a machine that holds no secrets. Keys that must be set are still required.
func Offline() Option { return func(o *options) { o.offline = true } }

// AllowSingleVoter accepts a cluster.peers list of one voter, which is otherwise an error:
// a single voter has no failover and no second opinion. It is for tests that need a
// Raft leader at once; no production command sets it.
func AllowSingleVoter() Option { return func(o *options) { o.singleVoter = true } }

// Load reads and validates the file at path.
func Load(path string, opts ...Option) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(bytes.NewReader(b), opts...)
}

// Parse decodes a config strictly and validates it. Unknown keys, keys given twice and
// values of the wrong type are errors naming the key path and line. The error joins
// every problem found, each prefixed with its key path.
func Parse(r io.Reader, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if errs := checkTree(&doc, reflect.TypeFor[raw](), ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var rw raw
	if err := doc.Decode(&rw); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	return build(rw, o)
}

type checker struct {
	errs []error
	opts options
}

func (c *checker) add(key, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (c *checker) dur(key, s string, dst *time.Duration) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.add(key, "invalid duration %q (use Go durations such as 200ms or 1s)", s)
		return
	}
	if d <= 0 {
		c.add(key, "must be positive, got %s", s)
		return
	}
	*dst = d
}

func (c *checker) hostPort(key, s string) {
	if s == "" {
		c.add(key, "must be set (host:port)")
		return
	}
	if _, p, err := net.SplitHostPort(s); err != nil {
		c.add(key, "invalid address %q: want host:port", s)
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		c.add(key, "invalid port in %q", s)
	}
}

func setInt(dst *int, src *int) {
	if src != nil {
		*dst = *src
	}
}

func setBool(dst *bool, src *bool) {
	if src != nil {
		*dst = *src
	}
}

// build turns the decoded file into a validated Config, starting from Default. Every
// problem is collected with its key; the sections are checked in file order, except
// that the role-dependent mysql and vip checks run only once both sections are decoded.
func build(rw raw, opts options) (*Config, error) {
	cfg := Default()
	c := &checker{opts: opts}
	buildNode(c, &cfg.Node, rw.Node)
	buildCluster(c, &cfg.Cluster, rw.Cluster, cfg.Node.ID)
	buildMySQL(c, &cfg.MySQL, rw.MySQL)
	buildVIP(c, &cfg.VIP, rw.VIP, cfg.Cluster.Peers)
	if cfg.IsDatabase() {
		checkDatabaseMySQL(c, &cfg.MySQL)
	}
	checkVIP(c, &cfg.VIP, len(rw.VIP.Addresses), cfg.IsDatabase())
	buildVRRP(c, &cfg.VRRP, rw.VRRP)
	buildFailover(c, &cfg.Failover, rw.Failover, &cfg.VIP)
	buildNotify(c, &cfg.Notify, rw.Notify)
	buildLog(c, &cfg.Log, rw.Log)
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// buildNode fills the node section and checks that it identifies the node.
func buildNode(c *checker, n *Node, rn rawNode) {
	n.ID, n.DataDir = rn.ID, rn.DataDir
	if rn.Role != "" {
		n.Role = rn.Role
	}
	if n.ID == "" {
		c.add("node.id", "must be set")
	}
	if n.Role != "database" && n.Role != "witness" {
		c.add("node.role", "must be database or witness, got %q", n.Role)
	}
	if n.DataDir == "" {
		c.add("node.data_dir", "must be set")
	}
}

// buildCluster fills the cluster section: this node's addresses, the token file, the
// voters (see buildPeers) and the raft timings (see buildRaft). nodeID is node.id.
func buildCluster(c *checker, cl *Cluster, rc rawCluster, nodeID string) {
	cl.RaftAddr, cl.APIAddr, cl.TokenFile = rc.RaftAddr, rc.APIAddr, rc.TokenFile
	c.hostPort("cluster.raft_addr", rc.RaftAddr)
	c.hostPort("cluster.api_addr", rc.APIAddr)
	if rc.TokenFile == "" {
		c.add("cluster.token_file", "must be set")
	} else if c.opts.offline {
		// not read: see Offline
	} else if _, err := readSecret("cluster.token_file", rc.TokenFile); err != nil {
		c.errs = append(c.errs, err)
	} else if err := privateFile("cluster.token_file", rc.TokenFile); err != nil {
		c.errs = append(c.errs, err)
	}
	if rc.RaftAddr != "" && rc.RaftAddr == rc.APIAddr {
		c.add("cluster.api_addr", "%q is also cluster.raft_addr: Raft and the admin API need their own ports", rc.APIAddr)
	}
	if t := rc.TLS; t != nil {
		cl.TLS = &TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
		for key, path := range map[string]string{"cluster.tls.ca_file": t.CAFile, "cluster.tls.cert_file": t.CertFile, "cluster.tls.key_file": t.KeyFile} {
			if path == "" {
				c.add(key, "must be set when cluster.tls is given")
			}
		}
		if t.KeyFile != "" && !c.opts.offline {
			if err := privateFile("cluster.tls.key_file", t.KeyFile); err != nil {
				c.errs = append(c.errs, err)
			}
		}
	}
	cl.Peers = buildPeers(c, rc, nodeID)
	buildRaft(c, &cl.Raft, rc.Raft)
}

// buildPeers returns cluster.peers, checking that ids are unique, that the voter count is
// odd, and that this node (nodeID) is listed with the same addresses as in rc.
func buildPeers(c *checker, rc rawCluster, nodeID string) []Peer {
	var peers []Peer
	ids := map[string]bool{}
	addrs := map[string]string{} // address → the key that uses it
	self := false
	for i, p := range rc.Peers {
		key := fmt.Sprintf("cluster.peers[%d]", i)
		if p.ID == "" {
			c.add(key+".id", "must be set")
		} else if ids[p.ID] {
			c.add(key+".id", "duplicate id %q", p.ID)
		}
		ids[p.ID] = true
		c.hostPort(key+".raft_addr", p.RaftAddr)
		c.hostPort(key+".api_addr", p.APIAddr)
		for _, a := range []struct{ field, addr string }{{"raft_addr", p.RaftAddr}, {"api_addr", p.APIAddr}} {
			if a.addr == "" {
				continue
			}
			if prev, dup := addrs[a.addr]; dup {
				c.add(key+"."+a.field, "%q is already %s: every raft and API address must be distinct", a.addr, prev)
			}
			addrs[a.addr] = key + "." + a.field
		}
		if p.ID == nodeID {
			self = true
			if p.RaftAddr != rc.RaftAddr {
				c.add(key+".raft_addr", "%q differs from cluster.raft_addr %q for this node", p.RaftAddr, rc.RaftAddr)
			}
			if p.APIAddr != rc.APIAddr {
				c.add(key+".api_addr", "%q differs from cluster.api_addr %q for this node", p.APIAddr, rc.APIAddr)
			}
		}
		peers = append(peers, Peer(p))
	}
	switch {
	case len(rc.Peers) == 0:
		c.add("cluster.peers", "must list every voter, this node included")
	case len(rc.Peers) == 1 && !c.opts.singleVoter:
		c.add("cluster.peers", "lists a single voter (%q): it can neither fail over nor outvote anything; list two database nodes and a witness", rc.Peers[0].ID)
	case len(rc.Peers)%2 == 0:
		c.add("cluster.peers", "needs an odd number of voters (two database nodes and a witness), got %d", len(rc.Peers))
	case !self && nodeID != "":
		c.add("cluster.peers", "must include this node (%q)", nodeID)
	}
	return peers
}

// buildRaft fills cluster.raft and checks the inequalities hashicorp/raft needs between
// its own timings.
func buildRaft(c *checker, r *Raft, rr rawRaft) {
	c.dur("cluster.raft.heartbeat_timeout", rr.HeartbeatTimeout, &r.HeartbeatTimeout)
	// Unset, the other timings follow heartbeat_timeout: election equal, leader lease and
	// commit timeout half of it (the defaults for the default heartbeat).
	if rr.ElectionTimeout == "" {
		r.ElectionTimeout = r.HeartbeatTimeout
	}
	if rr.LeaderLeaseTimeout == "" {
		r.LeaderLeaseTimeout = r.HeartbeatTimeout / 2
	}
	if rr.CommitTimeout == "" {
		r.CommitTimeout = r.HeartbeatTimeout / 2
	}
	c.dur("cluster.raft.election_timeout", rr.ElectionTimeout, &r.ElectionTimeout)
	c.dur("cluster.raft.leader_lease_timeout", rr.LeaderLeaseTimeout, &r.LeaderLeaseTimeout)
	c.dur("cluster.raft.commit_timeout", rr.CommitTimeout, &r.CommitTimeout)
	c.dur("cluster.raft.snapshot_interval", rr.SnapshotInterval, &r.SnapshotInterval)
	if t := rr.SnapshotThreshold; t != nil {
		if *t < 1 {
			c.add("cluster.raft.snapshot_threshold", "must be ≥ 1, got %d", *t)
		} else {
			r.SnapshotThreshold = uint64(*t)
		}
	}
	setInt(&r.JournalRetain, rr.JournalRetain)
	if r.JournalRetain < 100 {
		c.add("cluster.raft.journal_retain", "must be ≥ 100, got %d", r.JournalRetain)
	}
	if r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		c.add("cluster.raft.leader_lease_timeout", "(%s) cannot be larger than heartbeat_timeout (%s)", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	if r.ElectionTimeout < r.HeartbeatTimeout {
		c.add("cluster.raft.election_timeout", "(%s) must be ≥ heartbeat_timeout (%s)", r.ElectionTimeout, r.HeartbeatTimeout)
	}
	if r.HeartbeatTimeout < 50*time.Millisecond {
		c.add("cluster.raft.heartbeat_timeout", "(%s) below 50ms causes needless elections on loaded hosts", r.HeartbeatTimeout)
	}
	if r.CommitTimeout >= r.HeartbeatTimeout {
		c.add("cluster.raft.commit_timeout", "(%s) must be below heartbeat_timeout (%s)", r.CommitTimeout, r.HeartbeatTimeout)
	}
}

// buildMySQL fills the mysql section and checks its durations. What a database node
// needs on top is checked by checkDatabaseMySQL, after the vip section is decoded.
func buildMySQL(c *checker, m *MySQL, rm rawMySQL) {
	m.DSN, m.User, m.PasswordFile, m.CheckScript, m.AppUsers = rm.DSN, rm.User, rm.PasswordFile, rm.CheckScript, rm.AppUsers
	m.Host = rm.Host
	setInt(&m.Port, rm.Port)
	setInt(&m.Rise, rm.Rise)
	setInt(&m.Fall, rm.Fall)
	setBool(&m.WriteCheck, rm.WriteCheck)
	setBool(&m.SemiSync, rm.SemiSync)
	if rm.Flavor != "" {
		m.Flavor = rm.Flavor
	}
	c.dur("mysql.interval", rm.Interval, &m.Interval)
	c.dur("mysql.timeout", rm.Timeout, &m.Timeout)
}

// checkDatabaseMySQL checks the mysql section of a database node: how to reach the
// server, the health-check thresholds, and that a probe times out before fall
// intervals have passed.
func checkDatabaseMySQL(c *checker, m *MySQL) {
	if m.DSN == "" && m.Host == "" {
		c.add("mysql.host", "must be set (or mysql.dsn) on a database node")
	}
	if m.DSN != "" && m.Host != "" {
		c.add("mysql.dsn", "set either mysql.dsn or mysql.host, not both")
	}
	if m.DSN == "" && m.User == "" {
		c.add("mysql.user", "must be set on a database node")
	}
	if m.PasswordFile != "" && !c.opts.offline {
		if _, err := readSecret("mysql.password_file", m.PasswordFile); err != nil {
			c.errs = append(c.errs, err)
		}
	}
	if m.Port < 1 || m.Port > 65535 {
		c.add("mysql.port", "must be 1..65535, got %d", m.Port)
	}
	if m.Flavor != "mariadb" && m.Flavor != "mysql" {
		c.add("mysql.flavor", "must be mariadb or mysql, got %q", m.Flavor)
	}
	if m.Rise < 1 {
		c.add("mysql.rise", "must be ≥ 1, got %d", m.Rise)
	}
	if m.Fall < 1 {
		c.add("mysql.fall", "must be ≥ 1, got %d", m.Fall)
	}
	if m.Fall >= 1 && m.Timeout > m.Interval*time.Duration(m.Fall) {
		c.add("mysql.timeout", "(%s) must not exceed mysql.interval × mysql.fall (%s), or a hung server is detected late", m.Timeout, m.Interval*time.Duration(m.Fall))
	}
	if m.CheckScript != "" {
		c.program("mysql.check_script", m.CheckScript, true)
	}
}

// buildVIP fills the vip section, checking its durations and parsing each address (a
// bare IPv4 address counts as a /32). Invalid addresses are reported and left out; see
// checkVIPAddress for what a valid one must not be. peers is cluster.peers.
func buildVIP(c *checker, v *VIP, rv rawVIP, peers []Peer) {
	v.Interface, v.Label = rv.Interface, rv.Label
	setInt(&v.GARPRepeat, rv.GARPRepeat)
	c.dur("vip.garp_interval", rv.GARPInterval, &v.GARPInterval)
	c.dur("vip.kernel_lease", rv.KernelLease, &v.KernelLease)
	if rv.Fence != "" {
		v.Fence = rv.Fence
	}
	seen := map[netip.Addr]int{} // address → its index in vip.addresses
	for i, a := range rv.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			if ad, err2 := netip.ParseAddr(a); err2 == nil && ad.Is4() {
				p = netip.PrefixFrom(ad, 32)
			} else {
				c.add(fmt.Sprintf("vip.addresses[%d]", i), "invalid CIDR %q (e.g. 10.0.0.100/32)", a)
				continue
			}
		}
		if !p.Addr().Is4() {
			c.add(fmt.Sprintf("vip.addresses[%d]", i), "%s: only IPv4 VIPs are supported", p)
			continue
		}
		if !checkVIPAddress(c, i, p, seen, peers) {
			continue
		}
		seen[p.Addr()] = i
		v.Addresses = append(v.Addresses, p)
	}
}

// checkVIPAddress checks vip.addresses[i] (p): it must not repeat an earlier address
// (seen maps the valid ones to their index), must not be the network or broadcast
// address of its own prefix (a /31 or /32 has neither), and must not be the address of a
// cluster peer. It reports whether p is fine.
func checkVIPAddress(c *checker, i int, p netip.Prefix, seen map[netip.Addr]int, peers []Peer) bool {
	key := fmt.Sprintf("vip.addresses[%d]", i)
	if j, dup := seen[p.Addr()]; dup {
		c.add(key, "%s repeats the address of vip.addresses[%d]", p, j)
		return false
	}
	if p.Bits() < 31 {
		network := p.Masked().Addr()
		b := network.As4()
		host := uint32(1)<<(32-p.Bits()) - 1
		u := binary.BigEndian.Uint32(b[:]) | host
		binary.BigEndian.PutUint32(b[:], u)
		switch p.Addr() {
		case network:
			c.add(key, "%s is the network address of %s; give the VIP a host address", p, p.Masked())
			return false
		case netip.AddrFrom4(b):
			c.add(key, "%s is the broadcast address of %s; give the VIP a host address", p, p.Masked())
			return false
		}
	}
	for j, peer := range peers {
		for _, a := range []struct{ field, addr string }{{"raft_addr", peer.RaftAddr}, {"api_addr", peer.APIAddr}} {
			host, _, err := net.SplitHostPort(a.addr)
			if err != nil {
				continue
			}
			if ad, err := netip.ParseAddr(host); err == nil && ad == p.Addr() {
				c.add(key, "%s is the address of cluster.peers[%d].%s (%s): a VIP must be an address no host owns", p, j, a.field, a.addr)
				return false
			}
		}
	}
	return true
}

// checkVIP checks the vip section against the node's role (database reports whether it
// is a database node) and the gratuitous-ARP and kernel-lease limits. listed is the
// number of addresses in the file, valid or not.
func checkVIP(c *checker, v *VIP, listed int, database bool) {
	if database {
		if v.Interface == "" {
			c.add("vip.interface", "must be set on a database node")
		}
		if listed == 0 {
			c.add("vip.addresses", "must list at least one VIP on a database node")
		}
	} else if listed > 0 {
		c.add("vip.addresses", "must be empty on a witness: a witness never owns the VIP")
	}
	if v.GARPRepeat < 0 || v.GARPRepeat > 100 {
		c.add("vip.garp_repeat", "must be 0..100, got %d", v.GARPRepeat)
	}
	if v.KernelLease%time.Second != 0 || v.KernelLease < time.Second {
		c.add("vip.kernel_lease", "must be whole seconds ≥ 1s (the kernel's valid_lft unit), got %s", v.KernelLease)
	}
	switch v.Fence {
	case FenceAuto, FenceNftables, FenceOff:
	default:
		c.add("vip.fence", "must be auto, nftables or off, got %q", v.Fence)
	}
}

// buildVRRP fills the vrrp section and checks it against what keepalived accepts for
// the chosen protocol version.
func buildVRRP(c *checker, vr *VRRP, rv rawVRRP) {
	setBool(&vr.Enabled, rv.Enabled)
	setInt(&vr.Version, rv.Version)
	setInt(&vr.VirtualRouterID, rv.VirtualRouterID)
	setInt(&vr.Priority, rv.Priority)
	vr.AuthPass = rv.AuthPass
	c.dur("vrrp.advert_int", rv.AdvertInt, &vr.AdvertInt)
	if vr.Version != 2 && vr.Version != 3 {
		c.add("vrrp.version", "must be 2 or 3, got %d", vr.Version)
	}
	if vr.VirtualRouterID < 1 || vr.VirtualRouterID > 255 {
		c.add("vrrp.virtual_router_id", "must be 1..255, got %d", vr.VirtualRouterID)
	}
	if vr.Priority < 1 || vr.Priority > 254 {
		c.add("vrrp.priority", "must be 1..254 (255 means address owner), got %d", vr.Priority)
	}
	if len(vr.AuthPass) > 8 {
		c.add("vrrp.auth_pass", "at most 8 bytes (keepalived truncates longer passwords), got %d", len(vr.AuthPass))
	}
	if vr.Version == 3 && vr.AuthPass != "" {
		c.add("vrrp.auth_pass", "VRRPv3 has no authentication; remove it or use version 2")
	}
	if vr.Version == 2 && (vr.AdvertInt%time.Second != 0 || vr.AdvertInt > 255*time.Second) {
		c.add("vrrp.advert_int", "VRRPv2 needs whole seconds 1s..255s, got %s", vr.AdvertInt)
	}
	if vr.Version == 3 && (vr.AdvertInt%(10*time.Millisecond) != 0 || vr.AdvertInt > 40950*time.Millisecond) {
		c.add("vrrp.advert_int", "VRRPv3 needs centiseconds 10ms..40.95s, got %s", vr.AdvertInt)
	}
}

// buildFailover fills the failover section and checks it. v is the already built vip
// section, which checkCrossTimings compares the lease against.
func buildFailover(c *checker, f *Failover, rf rawFailover, v *VIP) {
	setBool(&f.Nopreempt, rf.Nopreempt)
	setBool(&f.FenceReadOnly, rf.FenceReadOnly)
	c.dur("failover.lease", rf.Lease, &f.Lease)
	c.dur("failover.catchup_timeout", rf.CatchupTimeout, &f.CatchupTimeout)
	c.dur("failover.damping", rf.Damping, &f.Damping)
	if rf.OnCatchupTimeout != "" {
		f.OnCatchupTimeout = rf.OnCatchupTimeout
	}
	if f.OnCatchupTimeout != "promote" && f.OnCatchupTimeout != "hold" {
		c.add("failover.on_catchup_timeout", "must be promote or hold, got %q", f.OnCatchupTimeout)
	}
	if f.Lease < 150*time.Millisecond {
		c.add("failover.lease", "(%s) must be ≥ 150ms: renewals go out every lease/3", f.Lease)
	}
	checkCrossTimings(c, f, v)
	if f.CatchupTimeout < 100*time.Millisecond {
		c.add("failover.catchup_timeout", "must be ≥ 100ms, got %s", f.CatchupTimeout)
	}
}

// checkCrossTimings checks the timing inequalities that span sections: failover.lease
// must not exceed 10 × vip.kernel_lease. Inequalities within one section stay with that
// section (buildRaft, checkDatabaseMySQL). buildFailover calls it between its own lease
// and catchup checks, which keeps the order errors are reported in.
func checkCrossTimings(c *checker, f *Failover, v *VIP) {
	if f.Lease > 10*v.KernelLease {
		c.add("failover.lease", "(%s) should not exceed 10 × vip.kernel_lease (%s)", f.Lease, v.KernelLease)
	}
}

// buildNotify fills the notify section and checks each hook's command line as the
// calling convention will run it.
func buildNotify(c *checker, n *Notify, rn rawNotify) {
	n.Master, n.Backup, n.Fault, n.Any = rn.Master, rn.Backup, rn.Fault, rn.Any
	if rn.Instance != "" {
		n.Instance = rn.Instance
	}
	if rn.Convention != "" {
		n.Convention = rn.Convention
	}
	c.dur("notify.timeout", rn.Timeout, &n.Timeout)
	if n.Timeout > 10*time.Minute {
		c.add("notify.timeout", "(%s) must not exceed 10m", n.Timeout)
	}
	if strings.ContainsAny(n.Instance, "\x00\n") {
		c.add("notify.instance", "%q must be one line", n.Instance)
	}
	shell := false
	switch n.Convention {
	case NotifyKeepalived:
	case NotifyShell:
		shell = true
	default:
		c.add("notify.convention", "must be keepalived or shell, got %q", n.Convention)
		return
	}
	for _, h := range []struct{ key, cmd string }{
		{"notify.master", n.Master}, {"notify.backup", n.Backup}, {"notify.fault", n.Fault}, {"notify.any", n.Any},
	} {
		if h.cmd != "" {
			c.program(h.key, h.cmd, shell)
		}
	}
}

// program checks the command line cmd of the hook or script at key. shell says it runs
// with /bin/sh -c; otherwise it is split as keepalived splits it ([cmdline.Split]) and
// run without a shell. Whether its program exists and is executable is not checked
// offline.
func (c *checker) program(key, cmd string, shell bool) {
	prog := ""
	if shell {
		prog = shellProgram(cmd)
	} else {
		words, meta, err := cmdline.SplitMeta(cmd)
		if err != nil {
			c.add(key, "%v", err)
			return
		}
		if meta != 0 {
			c.add(key, "%q uses shell syntax (%c) but runs without a shell under notify.convention keepalived: move it into a script, quote the character, or set notify.convention: shell", cmd, meta)
			return
		}
		prog = words[0]
	}
	if prog == "" || c.opts.offline {
		return
	}
	if err := checkProgram(prog); err != nil {
		c.add(key, "%v", err)
	}
}

// buildLog fills the log section and checks the level and format names.
func buildLog(c *checker, l *Log, rl rawLog) {
	if rl.Level != "" {
		l.Level = rl.Level
	}
	if rl.Format != "" {
		l.Format = rl.Format
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		c.add("log.level", "must be debug, info, warn or error, got %q", l.Level)
	}
	if l.Format != "json" && l.Format != "console" {
		c.add("log.format", "must be json or console, got %q", l.Format)
	}
}
