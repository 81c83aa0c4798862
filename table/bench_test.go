package table

import "testing"

// BenchmarkHand measures one basic-strategy hand through the rules engine.
func BenchmarkHand(b *testing.B) {
	rules := DefaultRules()
	shoe := newFreshShoe(rules.Decks)
	var round Round
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		shoe.reset(1, uint64(i))
		playHand(b, &round, rules, shoe, 10)
	}
}
