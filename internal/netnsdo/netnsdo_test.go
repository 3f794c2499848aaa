package netnsdo

import (
	"errors"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// fakeThread replaces the thread and namespace primitives and records what Do does with them.
type fakeThread struct {
	t       *testing.T
	getErr  error
	setErrs map[int]error // by call number, from 1
	mu      sync.Mutex
	locked  int // lock calls minus unlock calls
	sets    []netns.NsHandle
	orig    netns.NsHandle
}

func (f *fakeThread) install() {
	t := f.t
	saved := []any{lockOSThread, unlockOSThread, getNS, setNS}
	t.Cleanup(func() {
		lockOSThread = saved[0].(func())
		unlockOSThread = saved[1].(func())
		getNS = saved[2].(func() (netns.NsHandle, error))
		setNS = saved[3].(func(netns.NsHandle) error)
	})
	lockOSThread = func() { f.mu.Lock(); f.locked++; f.mu.Unlock() }
	unlockOSThread = func() { f.mu.Lock(); f.locked--; f.mu.Unlock() }
	getNS = func() (netns.NsHandle, error) {
		if f.getErr != nil {
			return netns.None(), f.getErr
		}
		// A real descriptor, because Do closes the handle it gets.
		file, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Dup(int(file.Fd()))
		file.Close()
		if err != nil {
			t.Fatal(err)
		}
		f.orig = netns.NsHandle(fd)
		return f.orig, nil
	}
	setNS = func(ns netns.NsHandle) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.sets = append(f.sets, ns)
		return f.setErrs[len(f.sets)]
	}
}

func TestDoFake(t *testing.T) {
	const target = netns.NsHandle(1 << 20) // never opened; only compared
	errGet, errEnter, errFn, errRestore := errors.New("get"), errors.New("enter"), errors.New("fn"), errors.New("restore")
	tests := []struct {
		name       string
		getErr     error
		setErrs    map[int]error
		fnErr      error
		wantRan    bool
		wantErrs   []error
		wantSets   int // number of setns calls: enter, restore
		wantLocked int // 1: the thread was left locked for the runtime to discard
	}{
		{name: "ok", wantRan: true, wantSets: 2},
		{name: "fn error", fnErr: errFn, wantRan: true, wantErrs: []error{errFn}, wantSets: 2},
		{name: "get fails", getErr: errGet, wantErrs: []error{errGet}},
		{name: "enter fails", setErrs: map[int]error{1: errEnter}, wantErrs: []error{errEnter}, wantSets: 2},
		{name: "restore fails", setErrs: map[int]error{2: errRestore}, wantRan: true, wantErrs: []error{errRestore}, wantSets: 2, wantLocked: 1},
		{name: "fn and restore fail", setErrs: map[int]error{2: errRestore}, fnErr: errFn, wantRan: true, wantErrs: []error{errFn, errRestore}, wantSets: 2, wantLocked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeThread{t: t, getErr: tt.getErr, setErrs: tt.setErrs}
			f.install()
			ran := false
			err := Do(target, func() error { ran = true; return tt.fnErr })
			if ran != tt.wantRan {
				t.Errorf("fn ran = %v, want %v", ran, tt.wantRan)
			}
			if len(tt.wantErrs) == 0 && err != nil {
				t.Errorf("Do = %v, want nil", err)
			}
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("Do = %v, want it to wrap %v", err, want)
				}
			}
			if len(f.sets) != tt.wantSets {
				t.Fatalf("setns calls %v, want %d", f.sets, tt.wantSets)
			}
			if tt.wantSets == 2 && !slices.Equal(f.sets, []netns.NsHandle{target, f.orig}) {
				t.Errorf("setns calls %v, want enter %v then restore %v", f.sets, target, f.orig)
			}
			if f.locked != tt.wantLocked {
				t.Errorf("thread lock count %d after Do, want %d", f.locked, tt.wantLocked)
			}
		})
	}
}

func TestDoNotOpen(t *testing.T) {
	ran := false
	err := Do(netns.None(), func() error { ran = true; return nil })
	if err == nil || ran {
		t.Fatalf("Do(None) = %v, fn ran %v; want an error and fn not run", err, ran)
	}
}

// TestDoCurrent switches into the namespace the test already runs in: as root this exercises the
// real setns path; without CAP_SYS_ADMIN setns fails and Do must report it without running fn.
func TestDoCurrent(t *testing.T) {
	cur, err := netns.Get()
	if err != nil {
		t.Skipf("open own netns: %v", err)
	}
	defer cur.Close()
	ran := false
	err = Do(cur, func() error {
		ran = true
		in, err := netns.Get()
		if err != nil {
			return err
		}
		defer in.Close()
		if !in.Equal(cur) {
			t.Errorf("inside Do the thread is in %v, want %v", in, cur)
		}
		return nil
	})
	if errors.Is(err, syscall.EPERM) {
		if ran {
			t.Error("fn ran although entering the namespace failed")
		}
		t.Skipf("no CAP_SYS_ADMIN: %v", err)
	}
	if err != nil || !ran {
		t.Fatalf("Do = %v, fn ran %v", err, ran)
	}
}

func TestOnThreadRestores(t *testing.T) {
	f := &fakeThread{t: t}
	f.install()
	other := netns.NsHandle(1 << 20)
	err := OnThread(func() error { return setNS(other) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.sets, []netns.NsHandle{other, f.orig}) || f.locked != 0 {
		t.Errorf("setns calls %v, lock count %d; want the thread restored to %v and unlocked", f.sets, f.locked, f.orig)
	}
}
