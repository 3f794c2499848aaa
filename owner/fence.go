package owner

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// FenceGuard is how much short of its lease's end the owner opens the VIP fence. It must
// exceed the fence's tolerance for a slow batch (nftfence.OpenSlack: the kernel counts a
// timeout from when it applies the batch), so the fence still closes before the lease
// ends; node's tests hold the two together.
const FenceGuard = 60 * time.Millisecond

// fenceLoop watches the VIP fence. When its table disappears (`nft flush ruleset`, a
// reload of nftables.service) the fence no longer stops anything: the VIP is dropped at
// once and is not taken again until the table is back (reinstalled, closed, every
// fenceRepairEvery); the next quorum renewal opens it. An owner whose fence stays lost
// for fenceGiveUp releases ownership (releaseReason), so the other node serves instead.
func (o *Owner) fenceLoop(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	lost := make(chan struct{}, 1)
	g.Go(func() error {
		err := o.d.Fence.Watch(gctx, func(reason string) {
			o.mu.Lock()
			if !o.fenceLost {
				o.fenceLostAt = o.now()
			}
			o.fenceLost = true
			o.mu.Unlock()
			o.log.Error("VIP fence lost: dropping the VIP until it is back", zap.String("reason", reason))
			_ = o.dropVIP(gctx, "VIP fence lost: "+reason)
			wake(lost)
		})
		if err != nil {
			return fmt.Errorf("watch the VIP fence: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-lost:
			}
			o.repairFence(gctx)
		}
	})
	return g.Wait()
}

// repairFence reinstalls the lost fence, retrying until it works or ctx ends.
func (o *Owner) repairFence(ctx context.Context) {
	t := time.NewTicker(fenceRepairEvery)
	defer t.Stop()
	for {
		err := o.d.Fence.Reinstall()
		if err == nil {
			o.mu.Lock()
			o.fenceLost = false
			o.mu.Unlock()
			o.log.Info("VIP fence reinstalled (closed); the next renewal opens it")
			o.poke()
			return
		}
		o.log.Error("reinstall the VIP fence", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
