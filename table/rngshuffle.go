package table

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

// Drawer is what RNGShuffler needs from the RNG service; *rng.Service
// implements it.
type Drawer interface {
	Draw(ctx context.Context, req rng.DrawRequest) (rng.Draw, error)
}

// ShoePurpose is the Purpose of every shoe draw in the RNG log.
const ShoePurpose = "shoe"

var _ Shuffler = (*RNGShuffler)(nil)

// RNGShuffler shuffles each shoe with one logged draw: a shuffle of the
// shoe's 52×decks positions with Purpose "shoe" and Ref "<table>/<shoe>".
// Position i of the shoe holds OrderedShoe(decks)[values[i]], so any round
// can be re-derived from the RNG log with ShoeFromRecord.
//
// The shoe's reference (ShuffledShoe.Ref, shown to players as the shoe_ref
// of a deal) is "rng/<log index>/<table>/<shoe>": it names the draw by its
// place in the log, never by its draw ID, because a draw ID lets a player
// read the draw's values over the RNG API — the whole undealt shoe. The ID
// is for the operator to publish once the shoe is finished.
type RNGShuffler struct {
	rng       Drawer
	requester string
}

// NewRNGShuffler returns a shuffler drawing from d as requester (the
// service's name in the log, e.g. "table:node-1").
func NewRNGShuffler(d Drawer, requester string) (*RNGShuffler, error) {
	if d == nil || requester == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "the RNG shuffler needs an RNG and a requester name")
	}
	return &RNGShuffler{rng: d, requester: requester}, nil
}

// ShoeRef is the draw's Ref for a table's shoe.
func ShoeRef(table string, shoe int64) string { return table + "/" + strconv.FormatInt(shoe, 10) }

// Shuffle implements Shuffler.
func (s *RNGShuffler) Shuffle(ctx context.Context, req ShoeRequest) (ShuffledShoe, error) {
	if req.Table == "" || req.Shoe < 1 || req.Decks < 1 || req.Decks > 8 {
		return ShuffledShoe{}, buzzer.Errorf(buzzer.EINVALID, "a shoe needs a table, a shoe number and 1..8 decks")
	}
	d, err := s.rng.Draw(ctx, rng.DrawRequest{
		Purpose: ShoePurpose, Ref: ShoeRef(req.Table, req.Shoe), Requester: s.requester,
		Kind: rng.KindShuffle, N: int64(52 * req.Decks), Count: 1,
	})
	if err != nil {
		return ShuffledShoe{}, err
	}
	cards, err := ShoeFromRecord(d.Record, req.Table, req.Shoe, req.Decks)
	if err != nil {
		return ShuffledShoe{}, buzzer.Wrap(err, buzzer.EINTERNAL, "the RNG service returned an unusable shuffle")
	}
	return ShuffledShoe{Ref: LogShoeRef(d.Index, req.Table, req.Shoe), Cards: cards}, nil
}

// LogShoeRef is a shoe's reference: the log index of its draw, then its table
// and number.
func LogShoeRef(index int64, table string, shoe int64) string {
	return fmt.Sprintf("rng/%d/%s", index, ShoeRef(table, shoe))
}

// ParseShoeRef splits a reference made by LogShoeRef.
func ParseShoeRef(ref string) (index int64, table string, shoe int64, err error) {
	bad := buzzer.Errorf(buzzer.EINVALID, "shoe reference %q is not rng/<index>/<table>/<shoe>", ref)
	rest, ok := strings.CutPrefix(ref, "rng/")
	if !ok {
		return 0, "", 0, bad
	}
	idx, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, "", 0, bad
	}
	slash := strings.LastIndexByte(rest, '/')
	if slash <= 0 {
		return 0, "", 0, bad
	}
	index, err1 := strconv.ParseInt(idx, 10, 64)
	shoe, err2 := strconv.ParseInt(rest[slash+1:], 10, 64)
	if err1 != nil || err2 != nil || index < 0 || shoe < 1 || strconv.FormatInt(index, 10) != idx || strconv.FormatInt(shoe, 10) != rest[slash+1:] {
		return 0, "", 0, bad
	}
	return index, rest[:slash], shoe, nil
}

// ShoeFromRecord re-derives a shoe from its logged draw, checking that the
// record is the shoe draw of that table and shoe number.
func ShoeFromRecord(rec rng.Record, table string, shoe int64, decks int) ([]Card, error) {
	n := 52 * decks
	if rec.Purpose != ShoePurpose || rec.Ref != ShoeRef(table, shoe) || rec.Kind != rng.KindShuffle || rec.N != int64(n) || len(rec.Values) != n {
		return nil, buzzer.Errorf(buzzer.EINVALID, "draw %s is not the %d-deck shoe draw of %s", rec.ID, decks, ShoeRef(table, shoe))
	}
	ordered := OrderedShoe(decks)
	cards := make([]Card, n)
	seen := make([]bool, n)
	for i, v := range rec.Values {
		if v < 0 || v >= int64(n) || seen[v] {
			return nil, buzzer.Errorf(buzzer.EINVALID, "draw %s is not a permutation", rec.ID)
		}
		seen[v] = true
		cards[i] = ordered[v]
	}
	return cards, nil
}
