package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// A planned handover whose target opened writes before it caught up (on_catchup_timeout:
// promote) broke the no-loss promise: raftctl says so and exits non-zero.
func TestHandoverWithoutCatchUpFails(t *testing.T) {
	lossy := func(f *fakeAPI) {
		f.add(6142, fsm.OwnerPromoted, "db2", 5, fsm.PromotedData{Owner: "db2", Reached: false, Target: "0-1-70", Missing: "0-1-69..70", WaitedMS: 5000, Policy: "promote"})
	}
	tests := []struct {
		name     string
		promote  func(f *fakeAPI)
		wantCode bool // non-zero
		want     string
	}{
		{"caught up", promoted, false, "nothing missing"},
		{"catch-up not reached", lossy, true, "catch-up NOT reached after 5000 ms, missing 0-1-69..70"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, clusterStatus("", ""))
			f.onPost = switchoverStory(0, tt.promote)
			out, code, errOut := raftctl(t, "--addr", f.addr(), "switchover", "--to", "db2", "--wait-timeout", (10 * time.Second).String())
			if (code != 0) != tt.wantCode || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d, want non-zero %v, output containing %q\n%s\n%s", code, tt.wantCode, tt.want, out, errOut)
			}
			if tt.wantCode && !strings.Contains(errOut, "may be missing") {
				t.Fatalf("the error does not say writes may be missing:\n%s", errOut)
			}
		})
	}
}
