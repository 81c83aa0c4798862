package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

// RNG draws: capture and the RNG log's side of replay.
//
// An RNG log's draws are captured by the store's audited Append
// (postgres.AuditedRNGStore, sqlite.AuditedRNGStore) in the transaction that
// appends them: one rng.draw record per leaf, keyed by the log's name (its
// checkpoint origin) with seq = leaf index + 1. The record carries the draw's
// identity, purpose, reference, requester, kind and leaf hash, never its
// values: the leaf hash commits to them, and the values stay in the RNG log,
// where an inclusion proof shows them to whoever may see them.

// RNGDrawRecords builds the rng.draw records of records (stored RNG log
// leaves, in index order) for the log named log in jurisdiction. Each
// record's id is "rng-" + the draw id, its time the draw's time. A leaf
// that is not an rng.Record encoding (the store keeps bytes, not records)
// is captured by its draw id, index and leaf hash alone, and stamped with
// the capture time by Prepare: the leaf hash still commits to its bytes.
func RNGDrawRecords(jurisdiction, log string, records []rng.StoredRecord) ([]*Record, error) {
	out := make([]*Record, 0, len(records))
	for _, sr := range records {
		if sr.Index < 0 {
			return nil, buzzer.Errorf(buzzer.EINTERNAL, "RNG draw %s has index %d", sr.ID, sr.Index)
		}
		leaf := tlog.RecordHash(sr.Data)
		p := RNGDraw{DrawID: sr.ID, Log: log, Index: uint64(sr.Index), LeafHash: hex.EncodeToString(leaf[:])}
		r := &Record{Jurisdiction: jurisdiction, Component: ComponentRNG, Key: log, Seq: p.Index + 1, Type: TypeRNGDraw}
		if d, err := rng.UnmarshalRecord(sr.Data); err == nil {
			p.DrawID, p.Purpose, p.Ref, p.Requester, p.Kind, p.N, p.Count = d.ID, d.Purpose, d.Ref, d.Requester, string(d.Kind), d.N, d.Count
			r.Time = d.Time.UTC()
		}
		r.ID = "rng-" + p.DrawID
		if c, ok := p.canonical(); ok {
			r.Payload, r.canon = c, c
		} else if err := r.SetPayload(p); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "RNG draw %s cannot be captured: %s", p.DrawID, buzzer.ErrorMessage(err))
		}
		out = append(out, r)
	}
	return out, nil
}

// canonical encodes p as SetPayload would, without its JSON round trips:
// the RNG capture runs on the log's single append path, once per draw. It
// declines (false) what it does not cover: a Result, or text that is not
// valid UTF-8.
func (p RNGDraw) canonical() ([]byte, bool) {
	if len(p.Result) > 0 {
		return nil, false
	}
	for _, s := range []string{p.DrawID, p.Log, p.Kind, p.LeafHash, p.Purpose, p.Ref, p.Requester} {
		if !utf8.ValidString(s) {
			return nil, false
		}
	}
	b := make([]byte, 0, 160+len(p.DrawID)+len(p.Log)+len(p.Purpose)+len(p.Ref)+len(p.Requester)+len(p.LeafHash))
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, ':')
	}
	str := func(name, v string, always bool) {
		if v != "" || always {
			field(name)
			b = appendString(b, v)
		}
	}
	// Keys in byte order; omitempty as the struct tags say.
	if p.Count != 0 {
		field("count")
		b = strconv.AppendInt(b, int64(p.Count), 10)
	}
	str("draw_id", p.DrawID, true)
	field("index")
	b = strconv.AppendUint(b, p.Index, 10)
	str("kind", p.Kind, false)
	str("leaf_hash", p.LeafHash, false)
	str("log", p.Log, true)
	if p.N != 0 {
		field("n")
		b = strconv.AppendInt(b, p.N, 10)
	}
	str("purpose", p.Purpose, false)
	str("ref", p.Ref, false)
	str("requester", p.Requester, false)
	return append(b, '}'), true
}

// RNGCaptureFrom says where the capture of an append at oldSize must start,
// given the sequence last captured for the log (Outbox.LastSeq): at oldSize
// when capture is up to date, earlier when draws were appended while it was
// off (they are captured first, in the same transaction, so the archive
// holds the whole log). Capture ahead of the log is a broken store and an
// error.
func RNGCaptureFrom(last uint64, oldSize int64) (int64, error) {
	if last > uint64(oldSize) {
		return 0, buzzer.Errorf(buzzer.EINTERNAL, "the audit capture holds %d RNG draws but the log only %d", last, oldSize).WithReason("audit_capture_out_of_order")
	}
	return int64(last), nil
}

// rngTree folds leaf hashes into a Merkle root (RFC 6962, as tlog and the RNG
// log compute it) keeping only the right edge: one complete subtree per
// set bit of the size.
type rngTree struct {
	hashes []tlog.Hash
	sizes  []uint64
}

func (t *rngTree) add(leaf tlog.Hash) {
	t.hashes, t.sizes = append(t.hashes, leaf), append(t.sizes, 1)
	for n := len(t.sizes); n >= 2 && t.sizes[n-1] == t.sizes[n-2]; n = len(t.sizes) {
		t.hashes[n-2] = tlog.NodeHash(t.hashes[n-2], t.hashes[n-1])
		t.sizes[n-2] *= 2
		t.hashes, t.sizes = t.hashes[:n-1], t.sizes[:n-1]
	}
}

func (t *rngTree) root() tlog.Hash {
	if len(t.hashes) == 0 {
		return tlog.Hash{}
	}
	h := t.hashes[len(t.hashes)-1]
	for i := len(t.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(t.hashes[i], h)
	}
	return h
}

// RNGLogState reads an RNG log's size and Merkle root from its store for
// Compare. Log is the log's name in the archive; empty, it is the origin of
// the store's latest checkpoint (the RNG service signs one when it starts,
// so any log that has draws names itself). An empty log reports nothing, as
// the archive of an empty log holds nothing.
type RNGLogState struct {
	Store rng.Store
	Log   string
}

var _ StateReader = RNGLogState{}

// ReadState implements StateReader: only RNGLogs and RNGRoots are set.
func (s RNGLogState) ReadState(ctx context.Context) (State, error) {
	st := State{RNGLogs: map[string]uint64{}, RNGRoots: map[string]string{}}
	size, err := s.Store.TreeSize(ctx)
	if err != nil || size == 0 {
		return st, err
	}
	name := s.Log
	if name == "" {
		saved, err := s.Store.LatestCheckpoint(ctx)
		if err != nil {
			return State{}, buzzer.Wrap(err, buzzer.ErrorCode(err), "the RNG log holds %d draws but no checkpoint names it", size)
		}
		body := saved.Note
		if i := bytes.LastIndex(body, []byte("\n\n")); i >= 0 {
			body = body[:i+1]
		}
		cp, err := rng.ParseCheckpoint(body)
		if err != nil {
			return State{}, buzzer.Wrap(err, buzzer.EINTERNAL, "the RNG log's latest checkpoint does not parse")
		}
		name = cp.Origin
	}
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		return s.Store.ReadHashes(ctx, idx)
	}))
	if err != nil {
		return State{}, buzzer.Wrap(err, buzzer.ErrorCode(err), "cannot compute the RNG log's root")
	}
	st.RNGLogs[name] = uint64(size)
	st.RNGRoots[name] = hex.EncodeToString(root[:])
	return st, nil
}

// MergeReaders reads every reader and merges their states: each map a
// reader sets (non-nil) is compared, the rest are not. Readers must set
// disjoint keys (a wallet store's state and an RNG log's, say).
func MergeReaders(readers ...StateReader) StateReader { return mergedReaders(readers) }

type mergedReaders []StateReader

func (m mergedReaders) ReadState(ctx context.Context) (State, error) {
	var out State
	for _, r := range m {
		st, err := r.ReadState(ctx)
		if err != nil {
			return State{}, err
		}
		out.Records += st.Records
		out.Transactions += st.Transactions
		out.Balances = mergeMap(out.Balances, st.Balances)
		out.Bets = mergeMap(out.Bets, st.Bets)
		out.Markets = mergeMap(out.Markets, st.Markets)
		out.RNGLogs = mergeMap(out.RNGLogs, st.RNGLogs)
		out.RNGRoots = mergeMap(out.RNGRoots, st.RNGRoots)
		out.Tables = mergeMap(out.Tables, st.Tables)
		out.Other = mergeMap(out.Other, st.Other)
	}
	return out, nil
}

func mergeMap[V any](dst, src map[string]V) map[string]V {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = make(map[string]V, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}
