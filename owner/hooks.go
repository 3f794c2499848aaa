package owner

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/vrrp"
)

// foreignEvery bounds how often one foreign VRRP source is journaled.
const foreignEvery = time.Minute

// notify runs the keepalived-compatible hook for state ("master", "backup" or "fault")
// in the background, bounded by hookTimeout; Run waits for it.
func (o *Owner) notify(ctx context.Context, state string) {
	script := map[string]string{"master": o.cfg.NotifyMaster, "backup": o.cfg.NotifyBackup, "fault": o.cfg.NotifyFault}[state]
	if script == "" {
		return
	}
	o.spawn(func() {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
		defer cancel()
		cmd := exec.CommandContext(hctx, "/bin/sh", "-c", script)
		cmd.Env = append(cmd.Environ(), "KEEPRAFT_STATE="+strings.ToUpper(state), "KEEPRAFT_NODE="+o.cfg.Node)
		out, err := cmd.CombinedOutput()
		if err != nil {
			o.log.Warn("notify hook failed", zap.String("state", state), zap.String("script", script), zap.Error(err), zap.ByteString("output", out))
			return
		}
		o.log.Info("notify hook ran", zap.String("state", state), zap.String("script", script))
	})
}

// OnForeign is the VRRP listener's callback: a foreign master on our VRID while we hold
// the VIP is journaled, at most once per foreignEvery per source. It works only while
// Run runs (the listener runs as one of Run's tasks).
func (o *Owner) OnForeign(r vrrp.Router) {
	o.mu.Lock()
	ctx := o.runCtx
	o.mu.Unlock()
	{
		if ctx == nil || ctx.Err() != nil || !o.holding.Load() {
			return
		}
		now := o.now()
		o.mu.Lock()
		last, seen := o.foreign[r.Src]
		if seen && now-last < foreignEvery {
			o.mu.Unlock()
			return
		}
		o.foreign[r.Src] = now
		o.mu.Unlock()
		o.log.Warn("foreign VRRP master on our VRID", zap.String("source", r.Src.String()), zap.Uint8("priority", r.Priority))
		d := fsm.ForeignData{Source: r.Src.String(), VRID: int(r.VRID), Priority: int(r.Priority), Version: r.Version}
		o.spawn(func() { o.proposeNow(ctx, fsm.ForeignVRRPMasterSeen, d) })
	}
}
