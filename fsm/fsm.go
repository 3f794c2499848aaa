package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// DefaultRetain is how many journal records a node keeps in memory and in snapshots.
const DefaultRetain = 10000

// Result says what Apply did with a journal entry.
type Result string

// The results.
const (
	ResultApplied Result = "applied"
	ResultStale   Result = "stale"
	ResultSkipped Result = "skipped"
	ResultInvalid Result = "invalid"
)

// Record is one journal line: the committed event, where it sits in the log and what
// Apply made of it.
type Record struct {
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Event  Event  `json:"event"`
	Result Result `json:"result"`
	Error  string `json:"error,omitempty"`
}

// ApplyResponse is what [FSM.Apply] returns through raft's ApplyFuture.Response.
type ApplyResponse struct {
	Index uint64
	Err   error
}

// FSM is the raft.FSM of keepraft: it folds events into a [State] and keeps the journal.
// Apply and Snapshot are called from raft's FSM goroutine; the read methods (State,
// Journal, Watch) are safe from any goroutine.
type FSM struct {
	retain int

	mu    sync.RWMutex
	state State
	// journal[start:] are the retained records, oldest first, with ascending indexes.
	// Trimming advances start and compacts only once start reaches retain, so an apply
	// never copies the whole journal.
	journal []Record
	start   int
	changed chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM at the empty state keeping up to retain journal records
// (DefaultRetain when retain ≤ 0).
func New(retain int) *FSM {
	if retain <= 0 {
		retain = DefaultRetain
	}
	return &FSM{retain: retain, state: NewState(), changed: make(chan struct{})}
}

// Apply implements raft.FSM. It never panics on a bad entry: undecodable, unknown, stale
// and invalid events are journaled with their result and skipped.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	_, err := f.ApplyEvent(l.Index, l.Term, l.Data)
	return ApplyResponse{Index: l.Index, Err: err}
}

// ApplyEvent folds one encoded event committed at index/term and journals it.
func (f *FSM) ApplyEvent(index, term uint64, data []byte) (Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := Record{Index: index, Term: term, Result: ResultApplied}
	ev, err := Decode(data)
	if err != nil {
		rec.Result, rec.Error = ResultInvalid, err.Error()
		rec.Event = Event{Type: "undecodable"}
		f.state.Index = index
		f.state.SkippedCount++
	} else {
		rec.Event = ev
		f.state, err = f.state.Apply(index, ev)
		switch {
		case err == nil:
		case errors.Is(err, ErrStale):
			rec.Result, rec.Error = ResultStale, err.Error()
		case errors.Is(err, ErrUnknownType):
			rec.Result, rec.Error = ResultSkipped, err.Error()
		default:
			rec.Result, rec.Error = ResultInvalid, err.Error()
		}
	}
	f.journal = append(f.journal, rec)
	if len(f.journal)-f.start > f.retain {
		f.start++
	}
	if f.start >= f.retain {
		f.journal, f.start = slices.Clone(f.journal[f.start:]), 0
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return rec, err
}

// State returns a copy of the current state.
func (f *FSM) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// Journal returns the retained records with Index > since, oldest first.
func (f *FSM) Journal(since uint64) []Record {
	f.mu.RLock()
	defer f.mu.RUnlock()
	kept := f.journal[f.start:]
	i := sort.Search(len(kept), func(i int) bool { return kept[i].Index > since })
	if i == len(kept) {
		return nil
	}
	return slices.Clone(kept[i:])
}

// Watch returns a channel that is closed at the next applied entry.
func (f *FSM) Watch() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// ImageVersion is the snapshot image format version.
const ImageVersion = 1

// Image is the serialized form of a snapshot: the state plus the retained journal, so
// the failover history survives log compaction.
type Image struct {
	Version int      `json:"version"`
	State   State    `json:"state"`
	Journal []Record `json:"journal"`
}

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{img: Image{Version: ImageVersion, State: f.state.Clone(), Journal: slices.Clone(f.journal[f.start:])}}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	img, err := ReadImage(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.journal, f.start = img.State, img.Journal, 0
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// ReadImage decodes a snapshot image.
func ReadImage(r io.Reader) (Image, error) {
	var img Image
	if err := json.NewDecoder(r).Decode(&img); err != nil {
		return Image{}, fmt.Errorf("decode snapshot: %w", err)
	}
	if img.State.Members == nil {
		img.State.Members = map[string]*NodeState{}
	}
	if img.State.Phase == "" {
		img.State.Phase = PhaseNone
	}
	return img, nil
}

type snapshot struct{ img Image }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.img); err != nil {
		return errors.Join(fmt.Errorf("write snapshot: %w", err), sink.Cancel())
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
