package rng

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/google/uuid"
)

// Record is one logged draw. Its canonical encoding (MarshalBinary) is the
// leaf data hashed into the log, so every field is covered by the Merkle tree.
type Record struct {
	ID           string    `json:"draw_id"` // UUID, canonical lower-case form
	Time         time.Time `json:"time"`    // when the values were drawn (UTC, nanoseconds)
	Purpose      string    `json:"purpose"`
	Ref          string    `json:"ref,omitempty"`
	Requester    string    `json:"requester"`
	Jurisdiction string    `json:"jurisdiction"`
	Kind         Kind      `json:"kind"`
	N            int64     `json:"n"`
	Count        int       `json:"count"`
	Values       []int64   `json:"values,omitempty"` // KindInt and KindShuffle
	Bytes        []byte    `json:"bytes,omitempty"`  // KindBytes
}

// recordMagic opens every encoded record; the byte after it is the version.
const recordMagic = "BZRNG"

// RecordVersion is the version of the canonical record encoding written today.
// A new field means a new version; old versions stay decodable forever.
const RecordVersion = 1

// maxRecordSize bounds an encoded record (a full shuffle of MaxShuffleN items
// at two bytes each plus the text fields fits well under it).
const maxRecordSize = 64 << 10

var kindCodes = map[Kind]byte{KindInt: 1, KindShuffle: 2, KindBytes: 3}

// Validate checks that r is a well-formed record: fields within bounds and
// values consistent with the kind (in range; a shuffle is a permutation).
func (r Record) Validate() error {
	id, err := uuid.Parse(r.ID)
	if err != nil || id.String() != r.ID {
		return buzzer.Errorf(buzzer.EINVALID, "record id must be a canonical UUID")
	}
	req := DrawRequest{Purpose: r.Purpose, Ref: r.Ref, Requester: r.Requester, Kind: r.Kind, N: r.N, Count: r.Count}
	if r.Kind != KindInt && r.Count != 1 {
		return buzzer.Errorf(buzzer.EINVALID, "record count must be 1 for kind %s", r.Kind)
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := checkText("jurisdiction", r.Jurisdiction, MaxJurisdictionLen, true); err != nil {
		return err
	}
	switch r.Kind {
	case KindInt:
		if len(r.Values) != r.Count || r.Bytes != nil {
			return buzzer.Errorf(buzzer.EINVALID, "int record must carry exactly count values")
		}
		for _, v := range r.Values {
			if v < 0 || v >= r.N {
				return buzzer.Errorf(buzzer.EINVALID, "int record value out of range")
			}
		}
	case KindShuffle:
		if int64(len(r.Values)) != r.N || r.Bytes != nil {
			return buzzer.Errorf(buzzer.EINVALID, "shuffle record must carry n values")
		}
		seen := make([]bool, r.N)
		for _, v := range r.Values {
			if v < 0 || v >= r.N || seen[v] {
				return buzzer.Errorf(buzzer.EINVALID, "shuffle record is not a permutation")
			}
			seen[v] = true
		}
	case KindBytes:
		if int64(len(r.Bytes)) != r.N || r.Values != nil {
			return buzzer.Errorf(buzzer.EINVALID, "bytes record must carry n bytes")
		}
	}
	return nil
}

// MarshalBinary returns the canonical version-1 encoding of r:
//
//	"BZRNG" 0x01 | id (16 bytes) | time (int64 big-endian Unix ns)
//	| purpose | ref | requester | jurisdiction   (each uvarint length + UTF-8)
//	| kind (1 int, 2 shuffle, 3 bytes) | n (uvarint) | count (uvarint)
//	| values: count (int) or n (shuffle) uvarints, or n raw bytes (bytes)
//
// There is exactly one encoding per record; UnmarshalRecord rejects any other.
func (r Record) MarshalBinary() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	id := uuid.MustParse(r.ID)
	b := make([]byte, 0, 64+len(r.Purpose)+len(r.Ref)+len(r.Requester)+len(r.Values)*3+len(r.Bytes))
	b = append(b, recordMagic...)
	b = append(b, RecordVersion)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	for _, s := range []string{r.Purpose, r.Ref, r.Requester, r.Jurisdiction} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, kindCodes[r.Kind])
	b = binary.AppendUvarint(b, uint64(r.N))
	b = binary.AppendUvarint(b, uint64(r.Count))
	for _, v := range r.Values {
		b = binary.AppendUvarint(b, uint64(v))
	}
	b = append(b, r.Bytes...)
	return b, nil
}

// UnmarshalRecord decodes a canonical record encoding. It is the parser of
// records received from a server being verified, so it trusts nothing: any
// malformed, non-canonical or out-of-bounds input is an EINVALID error.
func UnmarshalRecord(data []byte) (Record, error) {
	bad := func(what string) (Record, error) {
		return Record{}, buzzer.Errorf(buzzer.EINVALID, "malformed draw record: %s", what)
	}
	if len(data) > maxRecordSize {
		return bad("too large")
	}
	d := decoder{b: data}
	if string(d.take(len(recordMagic))) != recordMagic {
		return bad("bad magic")
	}
	if v := d.byte(); v != RecordVersion {
		return bad("unknown version")
	}
	var r Record
	idb := d.take(16)
	if d.err {
		return bad("truncated")
	}
	id, _ := uuid.FromBytes(idb)
	r.ID = id.String()
	ts := d.take(8)
	if d.err {
		return bad("truncated")
	}
	r.Time = time.Unix(0, int64(binary.BigEndian.Uint64(ts))).UTC()
	r.Purpose = d.str(MaxPurposeLen)
	r.Ref = d.str(MaxRefLen)
	r.Requester = d.str(MaxRequesterLen)
	r.Jurisdiction = d.str(MaxJurisdictionLen)
	switch d.byte() {
	case 1:
		r.Kind = KindInt
	case 2:
		r.Kind = KindShuffle
	case 3:
		r.Kind = KindBytes
	default:
		return bad("unknown kind")
	}
	n := d.uvarint()
	count := d.uvarint()
	if d.err || n > uint64(MaxIntN) || count > MaxCount {
		return bad("parameters out of range")
	}
	r.N, r.Count = int64(n), int(count)
	switch r.Kind {
	case KindInt, KindShuffle:
		want := count
		if r.Kind == KindShuffle {
			if n > MaxShuffleN {
				return bad("parameters out of range")
			}
			want = n
		}
		r.Values = make([]int64, 0, want)
		for i := uint64(0); i < want && !d.err; i++ {
			v := d.uvarint()
			if v >= n {
				return bad("value out of range")
			}
			r.Values = append(r.Values, int64(v))
		}
	case KindBytes:
		if n > MaxBytes {
			return bad("parameters out of range")
		}
		r.Bytes = bytes.Clone(d.take(int(n)))
	}
	if d.err {
		return bad("truncated")
	}
	if len(d.b) != 0 {
		return bad("trailing bytes")
	}
	if err := r.Validate(); err != nil {
		return Record{}, buzzer.Wrap(err, buzzer.EINVALID, "malformed draw record: %s", buzzer.ErrorMessage(err))
	}
	// Canonical: re-encoding must give back the input byte for byte (this
	// rejects non-minimal varints and any other alternative spelling).
	again, err := r.MarshalBinary()
	if err != nil || !bytes.Equal(again, data) {
		return bad("not canonical")
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) take(n int) []byte {
	if d.err || n < 0 || len(d.b) < n {
		d.err = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.err || n > uint64(max) {
		d.err = true
		return ""
	}
	return string(d.take(int(n)))
}
