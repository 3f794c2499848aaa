package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Faults for the chaos campaign (e2e/chaos_test.go): one-way drops, packet loss and delay,
// and small filesystems that can be filled. Everything happens inside the lab's namespaces
// or under the lab's Dir; nothing touches the root namespace's network.

// chaosTable is the nftables table for one-way drops; it is separate from the partition
// table, so healing one never undoes the other.
const chaosTable = "keepraft_chaos"

// DropOneWay drops (on=true) or stops dropping (on=false) the IPv4 packets that to receives
// from from, with an nftables rule in to's namespace (input hook): from can still receive
// everything to sends. It is idempotent.
func (l *Lab) DropOneWay(from, to *Host, on bool) error {
	if from == to {
		return fmt.Errorf("one-way drop %s from itself", from.Name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := "oneway:" + to.Name
	set, ok := l.fw[key]
	if !ok {
		if !on {
			return nil
		}
		script := fmt.Sprintf(`table inet %[1]s {
	set deaf { type ipv4_addr; }
	chain input { type filter hook input priority -20; policy accept; ip saddr @deaf drop; }
}
`, chaosTable)
		if err := nftIn(to, script); err != nil {
			return err
		}
		set = map[netip.Addr]bool{}
		l.fw[key] = set
	}
	if set[from.Addr] == on {
		return nil
	}
	verb := "add"
	if !on {
		verb = "delete"
	}
	if err := nftIn(to, fmt.Sprintf("%s element inet %s deaf { %s }\n", verb, chaosTable, from.Addr)); err != nil {
		return err
	}
	set[from.Addr] = on
	l.log.Info("one-way drop", zap.String("from", from.Name), zap.String("to", to.Name), zap.Bool("on", on))
	return nil
}

// lossTable is the nftables table for random packet loss when tc netem is missing.
const lossTable = "keepraft_chaos_loss"

// Netem sets packet loss (percent) and delay on h's eth0 egress with tc netem inside h's
// namespace; loss 0 and delay 0 remove it. On a kernel without sch_netem it falls back to
// random loss with nftables (lossPct percent of the lab packets in each direction) and no delay; the returned
// string says what was applied.
func (l *Lab) Netem(h *Host, lossPct int, delay, jitter time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if lossPct == 0 && delay == 0 {
		out, err := h.Run(ctx, "tc", "qdisc", "del", "dev", h.Iface, "root")
		if err != nil && !strings.Contains(string(out), "No such file") && !strings.Contains(string(out), "Cannot delete qdisc with handle of zero") &&
			!strings.Contains(string(out), "Cannot find specified qdisc") {
			return "", err
		}
		if _, err := h.Run(ctx, "nft", "delete", "table", "inet", lossTable); err != nil && !strings.Contains(err.Error(), "No such file") {
			return "", err
		}
		l.log.Info("netem off", zap.String("host", h.Name))
		return "off", nil
	}
	argv := []string{"tc", "qdisc", "replace", "dev", h.Iface, "root", "netem"}
	if delay > 0 {
		argv = append(argv, "delay", fmt.Sprintf("%dms", delay.Milliseconds()))
		if jitter > 0 {
			argv = append(argv, fmt.Sprintf("%dms", jitter.Milliseconds()))
		}
	}
	if lossPct > 0 {
		argv = append(argv, "loss", fmt.Sprintf("%d%%", lossPct))
	}
	out, err := h.Run(ctx, argv...)
	if err == nil {
		l.log.Info("netem on", zap.String("host", h.Name), zap.Int("loss_pct", lossPct), zap.Duration("delay", delay))
		return fmt.Sprintf("tc netem loss %d%% delay %s", lossPct, delay), nil
	}
	if !strings.Contains(string(out)+err.Error(), "qdisc kind is unknown") {
		return "", err
	}
	if lossPct == 0 {
		return "nothing (no sch_netem in this kernel: no delay possible)", nil
	}
	// Only the host's link loses packets, as with tc on the NIC: traffic to its own address
	// goes through lo and is not touched.
	script := fmt.Sprintf(`table inet %[1]s {
	chain input { type filter hook input priority -30; policy accept; iifname %[3]q ip saddr 198.18.0.0/15 numgen random mod 100 < %[2]d drop; }
	chain output { type filter hook output priority -30; policy accept; oifname %[3]q ip daddr 198.18.0.0/15 numgen random mod 100 < %[2]d drop; }
}
`, lossTable, lossPct, h.Iface)
	if err := nftIn(h, script); err != nil {
		return "", err
	}
	l.log.Info("random loss on (nftables)", zap.String("host", h.Name), zap.Int("loss_pct", lossPct))
	return fmt.Sprintf("nftables random loss %d%% each direction (no sch_netem in this kernel: delay %s not applied)", lossPct, delay), nil
}

// SmallFS is a size-limited tmpfs mounted on a directory of the lab, so a fault can fill it.
type SmallFS struct {
	// Dir is the mount point.
	Dir  string
	fill string
}

// MountSmallFS mounts a tmpfs of size bytes on dir, keeping dir's current contents (they are
// copied into the new filesystem). The process that uses dir must not run meanwhile, and the
// mount only shows in processes started afterwards. Unmount it with [SmallFS.Unmount].
func MountSmallFS(dir string, size int64) (*SmallFS, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keep := dir + ".orig"
	if err := os.Rename(dir, keep); err != nil {
		return nil, fmt.Errorf("small fs on %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("small fs on %s: %w", dir, err)
	}
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	fs := &SmallFS{Dir: dir, fill: filepath.Join(dir, "chaos-disk-fill")}
	if out, err := exec.CommandContext(ctx, "cp", "-a", keep+"/.", dir+"/").CombinedOutput(); err != nil {
		return fs, fmt.Errorf("copy %s into the small fs: %w: %s", keep, err, strings.TrimSpace(string(out)))
	}
	if err := os.RemoveAll(keep); err != nil {
		return fs, fmt.Errorf("small fs on %s: %w", dir, err)
	}
	return fs, nil
}

// Free returns the bytes available on the filesystem.
func (f *SmallFS) Free() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.Dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", f.Dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Fill writes a file that takes every free byte of the filesystem.
func (f *SmallFS) Fill() error {
	free, err := f.Free()
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(f.fill, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("fill %s: %w", f.Dir, err)
	}
	defer fh.Close()
	if free > 0 {
		if err := syscall.Fallocate(int(fh.Fd()), 0, 0, free); err != nil && !errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("fill %s (%d bytes): %w", f.Dir, free, err)
		}
	}
	// Whatever is left (rounding, concurrent frees) goes with plain writes until ENOSPC.
	buf := make([]byte, 64<<10)
	for i := 0; i < 4096; i++ {
		if _, err := fh.Write(buf); err != nil {
			break
		}
	}
	return nil
}

// Unfill removes the fill file.
func (f *SmallFS) Unfill() error {
	if err := os.Remove(f.fill); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unfill %s: %w", f.Dir, err)
	}
	return nil
}

// Unmount detaches the filesystem lazily (processes still using it keep it until they end).
func (f *SmallFS) Unmount() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "umount", "-l", f.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("umount %s: %w: %s", f.Dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}
