package probe

import (
	"slices"
	"testing"
)

func TestDebouncer(t *testing.T) {
	tests := []struct {
		name        string
		rise, fall  int
		initial     bool
		give        []bool
		wantHealthy []bool
		wantChanged []int // indexes of observations that changed the state
	}{
		{
			name: "fall 2 from healthy", rise: 3, fall: 2, initial: true,
			give:        []bool{true, false, false, false},
			wantHealthy: []bool{true, true, false, false},
			wantChanged: []int{2},
		},
		{
			name: "single failure absorbed", rise: 3, fall: 2, initial: true,
			give:        []bool{false, true, false, true},
			wantHealthy: []bool{true, true, true, true},
		},
		{
			name: "rise 3 from unhealthy", rise: 3, fall: 2, initial: false,
			give:        []bool{true, true, true, true},
			wantHealthy: []bool{false, false, true, true},
			wantChanged: []int{2},
		},
		{
			name: "flap resets the rise streak", rise: 3, fall: 2, initial: false,
			give:        []bool{true, true, false, true, true, true},
			wantHealthy: []bool{false, false, false, false, false, true},
			wantChanged: []int{5},
		},
		{
			name: "rise 1 fall 1 follows input", rise: 1, fall: 1, initial: true,
			give:        []bool{false, true, false},
			wantHealthy: []bool{false, true, false},
			wantChanged: []int{0, 1, 2},
		},
		{
			name: "zero treated as one", rise: 0, fall: 0, initial: true,
			give:        []bool{false, true},
			wantHealthy: []bool{false, true},
			wantChanged: []int{0, 1},
		},
		{
			name: "down then up again", rise: 2, fall: 2, initial: true,
			give:        []bool{false, false, true, true, false, false},
			wantHealthy: []bool{true, false, false, true, true, false},
			wantChanged: []int{1, 3, 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDebouncer(tt.rise, tt.fall, tt.initial)
			var gotHealthy []bool
			var gotChanged []int
			for i, ok := range tt.give {
				h, c := d.Observe(ok)
				gotHealthy = append(gotHealthy, h)
				if c {
					gotChanged = append(gotChanged, i)
				}
				if d.healthy != h {
					t.Fatalf("state %v after Observe returned %v", d.healthy, h)
				}
			}
			if !slices.Equal(gotHealthy, tt.wantHealthy) {
				t.Errorf("healthy = %v, want %v", gotHealthy, tt.wantHealthy)
			}
			if !slices.Equal(gotChanged, tt.wantChanged) {
				t.Errorf("changed at %v, want %v", gotChanged, tt.wantChanged)
			}
		})
	}
}
