package rng

import (
	"context"
	"fmt"

	"github.com/buzzer-bet/buzzer"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Proof shows that one draw is in the log: the record's canonical encoding,
// its leaf index, a signed checkpoint covering it and the inclusion proof
// against that checkpoint's root.
type Proof struct {
	Index      int64            `json:"log_index"`
	Data       []byte           `json:"record"`     // canonical encoding (base64 in JSON)
	Checkpoint []byte           `json:"checkpoint"` // signed note
	Hashes     tlog.RecordProof `json:"proof"`
}

// ConsistencyProof shows that the tree of size To extends the tree of size From.
type ConsistencyProof struct {
	From   int64          `json:"from"`
	To     int64          `json:"to"`
	Hashes tlog.TreeProof `json:"proof"`
}

// TamperError names the first place where a log fails verification.
type TamperError struct {
	Index      int64  // first record index implicated (-1 if none)
	Checkpoint int64  // size of the checkpoint implicated (-1 if none)
	Problem    string // what did not match
}

func (e *TamperError) Error() string {
	switch {
	case e.Index >= 0 && e.Checkpoint >= 0:
		return fmt.Sprintf("rng log: record %d, checkpoint %d: %s", e.Index, e.Checkpoint, e.Problem)
	case e.Index >= 0:
		return fmt.Sprintf("rng log: record %d: %s", e.Index, e.Problem)
	default:
		return fmt.Sprintf("rng log: checkpoint %d: %s", e.Checkpoint, e.Problem)
	}
}

// tampered wraps a TamperError as a buzzer error (ECONFLICT, reason
// "log_tampered") whose message names the index.
func tampered(index, checkpoint int64, format string, args ...any) error {
	te := &TamperError{Index: index, Checkpoint: checkpoint, Problem: fmt.Sprintf(format, args...)}
	return &buzzer.Error{Code: buzzer.ECONFLICT, Reason: "log_tampered", Message: te.Error(), Err: te}
}

// VerifyInclusion checks that data is the record at index in the tree cp commits to.
func VerifyInclusion(cp Checkpoint, index int64, data []byte, proof tlog.RecordProof) error {
	if index < 0 || index >= cp.Size {
		return tampered(index, cp.Size, "index is not covered by the checkpoint")
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, index, tlog.RecordHash(data)); err != nil {
		return tampered(index, cp.Size, "record is not included in the checkpoint (%v)", err)
	}
	return nil
}

// VerifyDraw checks a Proof end to end with the one verifier the caller
// trusts: the checkpoint's signature, the record's encoding, and its inclusion.
// It returns the decoded record and the verified checkpoint.
func VerifyDraw(p Proof, v note.Verifier) (Record, Checkpoint, error) {
	cp, err := OpenCheckpoint(p.Checkpoint, v)
	if err != nil {
		return Record{}, Checkpoint{}, err
	}
	if err := VerifyInclusion(cp, p.Index, p.Data, p.Hashes); err != nil {
		return Record{}, cp, err
	}
	r, err := UnmarshalRecord(p.Data)
	if err != nil {
		return Record{}, cp, tampered(p.Index, cp.Size, "logged record does not decode: %s", buzzer.ErrorMessage(err))
	}
	return r, cp, nil
}

// VerifyConsistency checks that latest extends trusted: same origin, not
// smaller, and (via proof) the first trusted.Size records are unchanged. A
// failure is a fork or a rewrite of the log (ECONFLICT, reason "log_fork").
func VerifyConsistency(trusted, latest Checkpoint, proof tlog.TreeProof) error {
	fork := func(format string, args ...any) error {
		te := &TamperError{Index: -1, Checkpoint: latest.Size, Problem: fmt.Sprintf(format, args...)}
		return &buzzer.Error{Code: buzzer.ECONFLICT, Reason: "log_fork", Message: te.Error(), Err: te}
	}
	if trusted.Origin != latest.Origin {
		return fork("origin %q differs from the trusted origin %q", latest.Origin, trusted.Origin)
	}
	if latest.Size < trusted.Size {
		return fork("log shrank from %d to %d records", trusted.Size, latest.Size)
	}
	if latest.Size == trusted.Size {
		if latest.Hash != trusted.Hash {
			return fork("same size %d as the trusted checkpoint but a different root", latest.Size)
		}
		return nil
	}
	if trusted.Size == 0 {
		return nil
	}
	if err := tlog.CheckTree(proof, latest.Size, latest.Hash, trusted.Size, trusted.Hash); err != nil {
		return fork("not an extension of the trusted checkpoint at size %d (%v)", trusted.Size, err)
	}
	return nil
}

// AuditReport summarises a successful audit.
type AuditReport struct {
	Records     int64     // records checked
	Checkpoints int64     // checkpoints checked
	Root        tlog.Hash // root hash of the whole log
}

// auditPage is how many records and checkpoints Audit reads per store call.
const auditPage = 1000

// Audit rebuilds the Merkle tree from every stored record and checks each
// stored hash against it, each record's encoding and ID, and every stored
// checkpoint's signature (by v only) and root. The first mismatch is returned
// as an ECONFLICT error wrapping a *TamperError naming the index.
func Audit(ctx context.Context, s Store, v note.Verifier) (AuditReport, error) {
	size, err := s.TreeSize(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	f, _ := newFrontier(0, nil)
	var rep AuditReport

	// Checkpoints are consumed in size order as the rebuilt tree reaches them.
	var cps []SavedCheckpoint
	var cpFrom int64
	cpDone := false
	lastGood := int64(0)
	nextCP := func() (*SavedCheckpoint, error) {
		if len(cps) == 0 && !cpDone {
			var err error
			cps, err = s.Checkpoints(ctx, cpFrom, auditPage)
			if err != nil {
				return nil, err
			}
			if len(cps) < auditPage {
				cpDone = true
			}
			if len(cps) > 0 {
				cpFrom = cps[len(cps)-1].Size + 1
			}
		}
		if len(cps) == 0 {
			return nil, nil
		}
		return &cps[0], nil
	}
	checkCP := func(c *SavedCheckpoint) error {
		cp, err := OpenCheckpoint(c.Note, v)
		if err != nil {
			return tampered(-1, c.Size, "signature does not verify: %s", buzzer.ErrorMessage(err))
		}
		if cp.Size != c.Size {
			return tampered(-1, c.Size, "stored under size %d but signs size %d", c.Size, cp.Size)
		}
		root, err := f.root()
		if err != nil {
			return err
		}
		if root != cp.Hash {
			return tampered(lastGood, c.Size, "root does not match the tree rebuilt from records %d..%d", lastGood, c.Size-1)
		}
		lastGood = c.Size
		rep.Checkpoints++
		cps = cps[1:]
		return nil
	}
	checkDue := func() error {
		for {
			c, err := nextCP()
			if err != nil {
				return err
			}
			if c == nil || c.Size > f.size {
				return nil
			}
			if err := checkCP(c); err != nil {
				return err
			}
		}
	}

	if err := checkDue(); err != nil { // a checkpoint of size 0, if any
		return rep, err
	}
	for f.size < size {
		if err := ctx.Err(); err != nil {
			return rep, buzzer.Wrap(err, buzzer.ETIMEOUT, "audit interrupted at record %d", f.size)
		}
		recs, err := s.Records(ctx, f.size, auditPage)
		if err != nil {
			return rep, err
		}
		if len(recs) == 0 {
			return rep, tampered(f.size, -1, "record is missing (tree size is %d)", size)
		}
		if last := f.size + int64(len(recs)); last > size {
			recs = recs[:size-f.size]
		}
		first := f.size
		hashBase := tlog.StoredHashCount(first)
		idx := make([]int64, tlog.StoredHashCount(first+int64(len(recs)))-hashBase)
		for i := range idx {
			idx[i] = hashBase + int64(i)
		}
		stored, err := s.ReadHashes(ctx, idx)
		if buzzer.ErrorCode(err) == buzzer.ENOTFOUND {
			return rep, tampered(first, -1, "stored hashes for records %d..%d are missing", first, first+int64(len(recs))-1)
		}
		if err != nil {
			return rep, err
		}
		for _, r := range recs {
			i := f.size
			if r.Index != i {
				return rep, tampered(i, -1, "record is missing (next stored record has index %d)", r.Index)
			}
			rec, err := UnmarshalRecord(r.Data)
			if err != nil {
				return rep, tampered(i, -1, "record does not decode: %s", buzzer.ErrorMessage(err))
			}
			if rec.ID != r.ID {
				return rep, tampered(i, -1, "stored under draw ID %s but records draw ID %s", r.ID, rec.ID)
			}
			hs, err := f.append(r.Data)
			if err != nil {
				return rep, err
			}
			at := tlog.StoredHashCount(i) - hashBase
			for k, h := range hs {
				if stored[at+int64(k)] != h {
					level, n := tlog.SplitStoredHashIndex(hashBase + at + int64(k))
					if level == 0 {
						return rep, tampered(n, -1, "record does not match its stored leaf hash")
					}
					lo, hi := n<<level, (n+1)<<level-1
					return rep, tampered(lo, -1, "stored hash %d (level %d, records %d..%d) does not match the rebuilt tree", hashBase+at+int64(k), level, lo, hi)
				}
			}
			rep.Records++
			if err := checkDue(); err != nil {
				return rep, err
			}
		}
	}
	if c, err := nextCP(); err != nil {
		return rep, err
	} else if c != nil {
		return rep, tampered(-1, c.Size, "checkpoint is beyond the end of the log (%d records): records were removed", size)
	}
	if extra, err := s.Records(ctx, size, 1); err != nil {
		return rep, err
	} else if len(extra) > 0 {
		return rep, tampered(extra[0].Index, -1, "record is beyond the tree size %d", size)
	}
	root, err := f.root()
	if err != nil {
		return rep, err
	}
	rep.Root = root
	return rep, nil
}

// Source is where a verifier fetches a log's public data: *Service in
// process, or an HTTP client of the /v1/rng routes (buzzer rng verify).
type Source interface {
	Checkpoint(ctx context.Context) (SavedCheckpoint, error)
	Proof(ctx context.Context, drawID string) (Proof, error)
	Consistency(ctx context.Context, from, to int64) (ConsistencyProof, error)
}

// CheckResult is what Check verified.
type CheckResult struct {
	// Latest is the newest verified checkpoint and LatestNote its signed
	// note: the caller's new trusted checkpoint.
	Latest     Checkpoint
	LatestNote []byte
	// Draw is the verified record when a draw was asked for.
	Draw  *Record
	Index int64
}

var _ Source = (*Service)(nil)

// Check is the offline verifier's whole job against a Source, trusting only
// v: the latest checkpoint's signature; if trustedNote is not nil, that the
// log extends the checkpoint the caller trusted before (fork detection); and
// if drawID is not empty, that draw's inclusion (and that the checkpoint its
// proof uses is consistent with the latest). The caller then stores
// LatestNote as its new trusted checkpoint.
func Check(ctx context.Context, src Source, v note.Verifier, trustedNote []byte, drawID string) (CheckResult, error) {
	saved, err := src.Checkpoint(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	latest, err := OpenCheckpoint(saved.Note, v)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Latest: latest, LatestNote: saved.Note, Index: -1}
	if trustedNote != nil {
		trusted, err := OpenCheckpoint(trustedNote, v)
		if err != nil {
			return res, buzzer.Wrap(err, buzzer.EINVALID, "the trusted checkpoint does not verify with this key: %s", buzzer.ErrorMessage(err))
		}
		if err := consistent(ctx, src, trusted, latest); err != nil {
			return res, err
		}
	}
	if drawID == "" {
		return res, nil
	}
	p, err := src.Proof(ctx, drawID)
	if err != nil {
		return res, err
	}
	rec, pcp, err := VerifyDraw(p, v)
	if err != nil {
		return res, err
	}
	if rec.ID != drawID {
		return res, tampered(p.Index, pcp.Size, "proof is for draw %s, not %s", rec.ID, drawID)
	}
	// The proof may use a newer checkpoint than the one fetched first (the
	// server signs one on demand); either way the two must be consistent.
	if pcp.Size >= latest.Size {
		if err := consistent(ctx, src, latest, pcp); err != nil {
			return res, err
		}
		res.Latest, res.LatestNote = pcp, p.Checkpoint
	} else if err := consistent(ctx, src, pcp, latest); err != nil {
		return res, err
	}
	res.Draw, res.Index = &rec, p.Index
	return res, nil
}

// consistent fetches and checks the proof that newer extends older.
func consistent(ctx context.Context, src Source, older, newer Checkpoint) error {
	var proof tlog.TreeProof
	if older.Size > 0 && newer.Size > older.Size {
		p, err := src.Consistency(ctx, older.Size, newer.Size)
		if err != nil {
			return err
		}
		if p.From != older.Size || p.To != newer.Size {
			return buzzer.Errorf(buzzer.EINVALID, "consistency proof is for %d..%d, asked for %d..%d", p.From, p.To, older.Size, newer.Size)
		}
		proof = p.Hashes
	}
	return VerifyConsistency(older, newer, proof)
}
