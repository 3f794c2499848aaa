package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/testenv"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, args, &out, &errb)
	if err != nil {
		t.Logf("keepraft-lab %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

func TestUpStatusExecMysqldDown(t *testing.T) { testUpStatusExecMysqldDown(t, "mariadb") }

// TestMySQLUpStatusExecMysqldDown is TestUpStatusExecMysqldDown with `up --flavor mysql`.
func TestMySQLUpStatusExecMysqldDown(t *testing.T) { testUpStatusExecMysqldDown(t, "mysql") }

func TestParseFlavor(t *testing.T) {
	tests := []struct {
		give    string
		want    string
		wantErr bool
	}{
		{give: "mariadb", want: "mariadb"},
		{give: "mysql", want: "mysql"},
		{give: "MySQL", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := parseFlavor(tt.give)
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Errorf("parseFlavor(%q) = %q, %v", tt.give, got, err)
			}
		})
	}
	// A bad flavor is refused before anything is made.
	state := filepath.Join(t.TempDir(), "state.json")
	if _, err := runCLI(t, "up", "--state", state, "--flavor", "oracle"); err == nil || !strings.Contains(err.Error(), "oracle") {
		t.Errorf("up --flavor oracle: %v", err)
	}
}

func testUpStatusExecMysqldDown(t *testing.T, flavor string) {
	if flavor == "mysql" {
		testenv.RequireMySQL(t)
	} else {
		testenv.Require(t)
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "kr" + hex.EncodeToString(b[:])
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state.json")
	// A stand-in for keepraftd that checks it got its config and stays up.
	fake := filepath.Join(tmp, "fake-keepraftd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$1\" = --config ] && [ -f \"$2\" ] || exit 2\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(state); err == nil {
			if l, err := testenv.Attach(testenvLog(t), state); err == nil {
				_ = l.Close()
			}
		}
	})

	out, err := runCLI(t, "up", "--state", state, "--prefix", prefix, "--dir", filepath.Join(tmp, "lab"), "--keepraftd", fake, "--flavor", flavor)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(tmp, "lab", "keepraft", "db1.yaml"))
	if err != nil || !strings.Contains(string(cfg), "flavor: "+flavor) {
		t.Errorf("db1's keepraftd config lacks mysql.flavor %s (%v):\n%s", flavor, err, cfg)
	}
	for _, want := range []string{prefix + "-db1", "198.18.0.13/24", "keepraftd-witness", "Yes/Yes", " " + flavor + " "} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q:\n%s", want, out)
		}
	}
	if _, err := runCLI(t, "up", "--state", state, "--prefix", prefix); err == nil {
		t.Errorf("second up on the same state succeeded")
	}
	s, err := testenv.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Procs) != 5 {
		t.Fatalf("state has %d processes, want 2 mariadbd + 3 keepraftd: %+v", len(s.Procs), s.Procs)
	}
	// Every keepraftd runs in its own node's namespace.
	for _, p := range s.Procs {
		if !strings.HasPrefix(p.Name, "keepraftd-") {
			continue
		}
		var got, want syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+prefix+"-"+p.Host, &want); err != nil {
			t.Fatal(err)
		}
		// The child is `ip netns exec NS keepraftd ...`: it enters the namespace a moment
		// after it was spawned, so wait (bounded) for it.
		deadline := time.Now().Add(3 * time.Second)
		for {
			if err := syscall.Stat("/proc/"+itoa(p.PID)+"/ns/net", &got); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			if got.Ino == want.Ino || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got.Ino != want.Ino {
			t.Errorf("%s (pid %d) is not in namespace %s-%s", p.Name, p.PID, prefix, p.Host)
		}
	}

	if out, err := runCLI(t, "exec", "--state", state, "db2", "--", "sh", "-c", "ip -4 -o addr show dev eth0; exit 7"); !strings.Contains(out, "198.18.0.12/24") {
		t.Errorf("exec output %q, err %v", out, err)
	} else {
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 7 {
			t.Errorf("exec exit: got %v, want status 7", err)
		}
	}

	if _, err := runCLI(t, "mysqld", "--state", state, "db1", "kill"); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "status", "--state", state)
	if err != nil || !strings.Contains(out, "down:") {
		t.Errorf("status after kill: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "mysqld", "--state", state, "db1", "start"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "mysqld", "--state", state, "db1", "start"); err == nil {
		t.Errorf("starting a running mysqld succeeded")
	}

	s, err = testenv.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "down", "--state", state); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Procs {
		if _, err := os.Stat("/proc/" + itoa(p.PID)); err == nil {
			if st, _ := os.ReadFile("/proc/" + itoa(p.PID) + "/stat"); len(st) > 0 && !bytes.Contains(st, []byte(") Z")) {
				t.Errorf("%s (pid %d) survived down", p.Name, p.PID)
			}
		}
	}
	for _, h := range []string{"br", "db1", "db2", "witness", "client"} {
		if _, err := os.Stat("/run/netns/" + prefix + "-" + h); !os.IsNotExist(err) {
			t.Errorf("namespace %s-%s left: %v", prefix, h, err)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after down: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func testenvLog(t *testing.T) *zap.Logger { return zaptest.NewLogger(t) }
