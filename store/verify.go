package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
)

// Recovery is what an operator does about a damaged or lost raft.db; [ErrCorrupt] errors
// for it and [ErrAmnesia] errors end with this text.
const Recovery = "restore this node's own data dir from a backup taken while its keepraftd was stopped, " +
	"or re-form the cluster in a maintenance window (docs/runbook.md, \"Replacing a failed host\"; " +
	"this version has no verb to remove and re-add one member)"

// The parts of the bbolt file format that checkMeta reads: two meta pages at the start of
// the file, each a page header followed by the meta fields, in native byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16 // id uint64, flags uint16, count uint16, overflow uint32
	boltMetaSize   = 64 // magic, version, page size, flags, root{pgid, seq}, freelist, pgid, txid, checksum
	boltNoFreelist = ^uint64(0)
)

// boltMeta is one decoded meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// parseMeta decodes and validates the meta page held in b (header included).
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, errors.New("meta page is cut short")
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	e := binary.NativeEndian
	if e.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("meta page has no bbolt magic")
	}
	if v := e.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("meta page has format version %d, want %d", v, boltVersion)
	}
	if sum := e.Uint64(m[56:]); sum != 0 {
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != sum {
			return boltMeta{}, errors.New("meta page checksum mismatch")
		}
	}
	meta := boltMeta{pageSize: e.Uint32(m[8:]), root: e.Uint64(m[16:]), freelist: e.Uint64(m[32:]), pgid: e.Uint64(m[40:]), txid: e.Uint64(m[48:])}
	switch {
	case meta.pageSize < 512 || meta.pageSize&(meta.pageSize-1) != 0:
		return boltMeta{}, fmt.Errorf("meta page has page size %d", meta.pageSize)
	case meta.root >= meta.pgid:
		return boltMeta{}, fmt.Errorf("root page %d beyond the high-water mark %d", meta.root, meta.pgid)
	case meta.freelist >= meta.pgid && meta.freelist != boltNoFreelist:
		return boltMeta{}, fmt.Errorf("freelist page %d beyond the high-water mark %d", meta.freelist, meta.pgid)
	}
	return meta, nil
}

// checkMeta reads the meta pages of the bbolt file at path without mapping it, picks the
// one bbolt would use (the valid one with the higher transaction id) and checks that every
// page it refers to lies inside the file. A missing or empty file passes: bbolt creates a
// new database there. Damage is reported as a plain error, which callers wrap in
// [ErrCorrupt].
func checkMeta(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	first := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := io.ReadFull(f, first); err != nil {
		return fmt.Errorf("file is %d bytes, too short for a bbolt header", size)
	}
	m0, err0 := parseMeta(first)
	// The second meta page sits one page in; take the page size from the first meta
	// page when it is sound, else try the usual sizes.
	sizes := []int64{4096, 8192, 16384, 65536}
	if err0 == nil {
		sizes = []int64{int64(m0.pageSize)}
	}
	m1, err1 := boltMeta{}, errors.New("second meta page not found")
	for _, ps := range sizes {
		b := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(b, ps); err != nil {
			continue
		}
		if m1, err1 = parseMeta(b); err1 == nil {
			break
		}
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("both meta pages are invalid: %w; %w", err0, err1)
	case err0 != nil:
		m = m1
	case err1 != nil || m0.txid >= m1.txid:
		m = m0
	default:
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); need > size {
		return fmt.Errorf("file is %d bytes but its pages reach %d bytes: it was truncated", size, need)
	}
	return nil
}

// errPanic marks an error made by guard from a recovered panic.
var errPanic = errors.New("bbolt panicked")

// guard runs f with memory faults turned into panics and turns any panic, such as one
// raised by bbolt reading a damaged page, into an error wrapping errPanic.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanic, r)
		}
	}()
	return f()
}

// damaged reports whether err from opening or reading a bbolt file means the file
// itself is bad, rather than for example a permission or I/O error.
func damaged(err error) bool {
	return errors.Is(err, errPanic) || errors.Is(err, bbolt.ErrInvalid) ||
		errors.Is(err, bbolt.ErrVersionMismatch) || errors.Is(err, bbolt.ErrChecksum)
}

// verify checks the bbolt file at path before raft-boltdb opens it: the meta pages and
// file size, then a walk over every bucket, key and value under [guard], so a damaged
// file yields an error wrapping [ErrCorrupt] (or [ErrLocked]) instead of a panic or a
// fault later in the Raft goroutines.
func verify(path string, lockTimeout time.Duration) error {
	corrupt := func(err error) error {
		return fmt.Errorf("open %s: %w: %w; %s", path, ErrCorrupt, err, Recovery)
	}
	if err := checkMeta(path); err != nil {
		return corrupt(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // bbolt creates a new database; Inspect tells the caller
	}
	var db *bbolt.DB
	err := guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
		return err
	})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("open %s: %w", path, ErrLocked)
	case err != nil && damaged(err):
		return corrupt(err)
	case err != nil:
		return fmt.Errorf("open %s: %w", path, err)
	}
	err = guard(func() error { return db.View(walk) })
	if cerr := db.Close(); cerr != nil && err == nil {
		return fmt.Errorf("close %s: %w", path, cerr)
	}
	if err != nil {
		return corrupt(err)
	}
	return nil
}

// walk touches every page of the database reachable from tx: each bucket, key and the
// first and last byte of each value.
func walk(tx *bbolt.Tx) error {
	var sink byte
	var visit func(b *bbolt.Bucket) error
	visit = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return visit(nb)
				}
				return nil
			}
			if len(v) > 0 {
				sink ^= v[0] ^ v[len(v)-1]
			}
			return nil
		})
	}
	err := tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return visit(b) })
	return err
}
