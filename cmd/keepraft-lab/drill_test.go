package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/testenv"
)

func TestVIPLine(t *testing.T) {
	vip := netip.MustParsePrefix("198.18.0.100/32")
	tests := []struct {
		name              string
		holders, withAddr []string
		want              string
	}{
		{"none", nil, nil, "VIP 198.18.0.100: no holder"},
		{"one", []string{"db1"}, []string{"db1"}, "VIP 198.18.0.100: held by db1"},
		{"two", []string{"db1", "db2"}, []string{"db1", "db2"}, "VIP 198.18.0.100: held by db1, db2 (MORE THAN ONE HOLDER)"},
		{"fenced", []string{"db2"}, []string{"db1", "db2"}, "VIP 198.18.0.100: held by db2; address behind a closed fence on db1"},
		{"only fenced", nil, []string{"db1"}, "VIP 198.18.0.100: no holder; address behind a closed fence on db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vipLine(vip, tt.holders, tt.withAddr); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// startTime reads field 22 of /proc/PID/stat, as testenv records it.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// procState is the state letter of /proc/PID/stat ("" once the process is gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return f[0]
}

// stand is a stand-in daemon: a sleep in its own process group, as the lab starts
// keepraftd, reaped by the test.
type stand struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startStand(t *testing.T) *stand {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stand{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

// attachProcs writes a lab state file without hosts listing procs and attaches to it:
// no namespaces are needed, and nothing is written to the lab registry.
func attachProcs(t *testing.T, procs []testenv.ProcState) *testenv.Lab {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(testenv.State{Version: 1, Prefix: "krtest", Dir: dir, Procs: procs})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := testenv.Attach(zaptest.NewLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFindKeepraftd(t *testing.T) {
	a, b := startStand(t), startStand(t)
	pa, pb := a.cmd.Process.Pid, b.cmd.Process.Pid
	l := attachProcs(t, []testenv.ProcState{
		{Name: "keepraftd-db1", Host: "db1", PID: pa, Start: startTime(t, pa) + 1, Argv: []string{"old"}}, // a reused PID: gone
		{Name: "keepraftd-db1", Host: "db1", PID: pa, Start: startTime(t, pa), Argv: []string{"new"}},
		{Name: "mariadb-db2", Host: "db2", PID: pb, Start: startTime(t, pb)},
		{Name: "keepraftd-db10", Host: "db10", PID: pb, Start: startTime(t, pb)},
		{Name: "keepraftd-db2", Host: "db2", PID: pb, Start: startTime(t, pb) + 1, Argv: []string{"dead"}},
	})
	tests := []struct {
		host               string
		wantLive, wantLast string // Argv[0]; "" for nil
	}{
		{"db1", "new", "new"},
		{"db2", "", "dead"},
		{"witness", "", ""},
	}
	argv0 := func(p *testenv.Proc) string {
		if p == nil {
			return ""
		}
		return p.Argv[0]
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			live, last := findKeepraftd(l.Procs(), tt.host)
			if argv0(live) != tt.wantLive || argv0(last) != tt.wantLast {
				t.Errorf("live %q, last %q; want %q, %q", argv0(live), argv0(last), tt.wantLive, tt.wantLast)
			}
		})
	}
}

// TestDrillSignals runs freeze, thaw, stop and kill against stand-in processes adopted
// from a state file, and checks each one's effect in /proc.
func TestDrillSignals(t *testing.T) {
	db1, db2 := startStand(t), startStand(t)
	p1, p2 := db1.cmd.Process.Pid, db2.cmd.Process.Pid
	l := attachProcs(t, []testenv.ProcState{
		{Name: "keepraftd-db1", Host: "db1", PID: p1, Start: startTime(t, p1)},
		{Name: "keepraftd-db2", Host: "db2", PID: p2, Start: startTime(t, p2)},
	})
	waitState := func(pid int, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for procState(pid) != want {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d state %q, want %q", pid, procState(pid), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	gone := func(s *stand) {
		t.Helper()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("pid %d still runs", s.cmd.Process.Pid)
		}
	}
	steps := []struct {
		host, action string
		check        func()
		wantErr      string
	}{
		{"db1", "freeze", func() { waitState(p1, "T") }, ""},
		{"db1", "thaw", func() { waitState(p1, "S") }, ""},
		{"db1", "stop", func() { gone(db1) }, ""},
		{"db1", "kill", nil, "no running keepraftd on db1"},
		{"db2", "kill", func() { gone(db2) }, ""},
		{"db2", "freeze", nil, "no running keepraftd on db2"},
		{"db2", "reboot", nil, "unknown action"},
	}
	for _, st := range steps {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := drill{host: st.host, action: st.action, stopWait: 5 * time.Second}.run(ctx, l, &out)
		cancel()
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s %s: err %v, want %q", st.host, st.action, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s %s: %v", st.host, st.action, err)
		}
		if !strings.Contains(out.String(), st.action+" done") {
			t.Errorf("%s %s: output %q", st.host, st.action, out.String())
		}
		st.check()
	}
}

// spawnLab is a drillLab whose hosts exist and whose Spawn only records.
type spawnLab struct {
	*testenv.Lab
	hosts  []string
	spawns [][]string
}

func (s *spawnLab) Host(name string) *testenv.Host {
	if !slices.Contains(s.hosts, name) {
		return nil
	}
	return &testenv.Host{Name: name}
}

func (s *spawnLab) Spawn(h *testenv.Host, name string, argv, _ []string) (*testenv.Proc, error) {
	s.spawns = append(s.spawns, append([]string{h.Name, name}, argv...))
	return &testenv.Proc{Name: name, PID: 4242, LogPath: "/lab/logs/" + name + ".log"}, nil
}

func TestDrillStart(t *testing.T) {
	running := startStand(t)
	pr := running.cmd.Process.Pid
	self := os.Getpid()
	tests := []struct {
		name      string
		procs     []testenv.ProcState
		host, bin string
		want      []string // spawned: host, name, argv...
		wantErr   string
	}{
		{name: "recorded command line", host: "db1",
			procs: []testenv.ProcState{{Name: "keepraftd-db1", PID: self, Start: 1, Argv: []string{"/lab/bin/keepraftd", "--config", "/lab/keepraft/db1.yaml"}}},
			want:  []string{"db1", "keepraftd-db1", "/lab/bin/keepraftd", "--config", "/lab/keepraft/db1.yaml"}},
		{name: "--bin replaces the binary", host: "db1", bin: "/new/keepraftd",
			procs: []testenv.ProcState{{Name: "keepraftd-db1", PID: self, Start: 1, Argv: []string{"/lab/bin/keepraftd", "--config", "/lab/keepraft/db1.yaml"}}},
			want:  []string{"db1", "keepraftd-db1", "/new/keepraftd", "--config", "/lab/keepraft/db1.yaml"}},
		{name: "no record: --bin and the lab's config", host: "witness", bin: "/new/keepraftd",
			want: []string{"witness", "keepraftd-witness", "/new/keepraftd", "--config", "LABDIR/keepraft/witness.yaml"}},
		{name: "no record, no --bin", host: "witness", wantErr: "give --bin"},
		{name: "already running", host: "db1",
			procs:   []testenv.ProcState{{Name: "keepraftd-db1", PID: pr, Start: startTime(t, pr), Argv: []string{"x"}}},
			wantErr: "already running"},
		{name: "unknown host", host: "db9", bin: "/new/keepraftd", wantErr: `no host "db9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &spawnLab{Lab: attachProcs(t, tt.procs), hosts: []string{"db1", "db2", "witness"}}
			var out bytes.Buffer
			err := drill{host: tt.host, action: "start", bin: tt.bin, dir: l.Dir, stopWait: time.Second}.run(context.Background(), l, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if len(l.spawns) != 0 {
					t.Errorf("spawned %q after an error", l.spawns)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tt.want)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "LABDIR", l.Dir)
			}
			if len(l.spawns) != 1 || !slices.Equal(l.spawns[0], want) {
				t.Errorf("spawned %q, want [%q]", l.spawns, want)
			}
			if !strings.Contains(out.String(), "(pid 4242): started") {
				t.Errorf("output %q", out.String())
			}
		})
	}
}
