package audit

// Checker checks a log's records in order for what the hash chain cannot
// show: every record is canonical, its id is unique, and its sequence is the
// next of its stream key. archive.VerifyRecords runs it over every record
// while checking frames, chain links and seals.
type Checker struct {
	ids  map[string]struct{}
	seqs map[string]uint64
}

// NewChecker returns a checker for a log read from its first record.
func NewChecker() *Checker {
	return &Checker{ids: map[string]struct{}{}, seqs: map[string]uint64{}}
}

// Check checks the next record of the log.
func (c *Checker) Check(b []byte) error {
	r, err := DecodeCanonical(b)
	if err != nil {
		return err
	}
	if _, dup := c.ids[r.ID]; dup {
		return invalid("record id %s appears twice", r.ID)
	}
	c.ids[r.ID] = struct{}{}
	k := r.StreamKey()
	if r.Seq != c.seqs[k]+1 {
		return invalid("record %s has seq %d of %s, want %d", r.ID, r.Seq, k, c.seqs[k]+1)
	}
	c.seqs[k] = r.Seq
	return nil
}
