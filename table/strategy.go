package table

// BasicStrategy returns the basic-strategy decision for a hand against the
// dealer's up card, given the actions that are legal now. It is the total-
// dependent strategy for shoe games (4–8 decks), adjusted for the rules that
// change it: dealer hits or stands on soft 17, double after split, late
// surrender. When the chart's first choice is not legal (a double on three
// cards or under a 9–11 rule, a split past the resplit limit) it falls back
// the way the chart says: "double else hit", "double else stand", "surrender
// else hit/stand/split". Insurance is always declined. Used by the house-edge
// simulation and by bots in load tests.
func BasicStrategy(rules Rules, legal Actions, cards []Card, up Card) Action {
	if legal.Has(NoInsurance) {
		return NoInsurance
	}
	u := up.Value()
	if u == 1 {
		u = 11
	}
	total, soft := handValue(cards)
	if len(cards) == 2 && cards[0].Value() == cards[1].Value() && legal.Has(Split) {
		if a, ok := pairDecision(rules, cards[0].Value(), u, legal); ok {
			return a
		}
	}
	if soft {
		return softDecision(rules, total, u, legal)
	}
	return hardDecision(rules, total, u, legal)
}

// pairDecision answers for a splittable pair; ok=false means "play the total".
func pairDecision(rules Rules, v, u int, legal Actions) (Action, bool) {
	das := rules.DoubleAfterSplit
	switch v {
	case 1:
		return Split, true
	case 8:
		if rules.HitSoft17 && u == 11 && legal.Has(Surrender) {
			return Surrender, true
		}
		return Split, true
	case 2, 3:
		if (das && u >= 2 && u <= 7) || (!das && u >= 4 && u <= 7) {
			return Split, true
		}
	case 4:
		if das && (u == 5 || u == 6) {
			return Split, true
		}
	case 6:
		if (das && u >= 2 && u <= 6) || (!das && u >= 3 && u <= 6) {
			return Split, true
		}
	case 7:
		if u >= 2 && u <= 7 {
			return Split, true
		}
	case 9:
		if (u >= 2 && u <= 6) || u == 8 || u == 9 {
			return Split, true
		}
		return Stand, true
	}
	return NoAction, false
}

func orElse(legal Actions, first, fallback Action) Action {
	if legal.Has(first) {
		return first
	}
	return fallback
}

func hardDecision(rules Rules, t, u int, legal Actions) Action {
	if legal.Has(Surrender) {
		switch {
		case t == 16 && u >= 9:
			return Surrender
		case t == 15 && (u == 10 || (rules.HitSoft17 && u == 11)):
			return Surrender
		case t == 17 && rules.HitSoft17 && u == 11:
			return Surrender
		}
	}
	switch {
	case t >= 17:
		return Stand
	case t >= 13:
		if u <= 6 {
			return Stand
		}
		return Hit
	case t == 12:
		if u >= 4 && u <= 6 {
			return Stand
		}
		return Hit
	case t == 11:
		if u <= 10 || rules.HitSoft17 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	case t == 10:
		if u <= 9 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	case t == 9:
		if u >= 3 && u <= 6 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	}
	return Hit
}

func softDecision(rules Rules, t, u int, legal Actions) Action {
	switch {
	case t >= 20:
		return Stand
	case t == 19:
		if rules.HitSoft17 && u == 6 {
			return orElse(legal, DoubleDown, Stand)
		}
		return Stand
	case t == 18:
		switch {
		case u == 2 && rules.HitSoft17, u >= 3 && u <= 6:
			return orElse(legal, DoubleDown, Stand)
		case u <= 8:
			return Stand
		}
		return Hit
	case t == 17:
		if u >= 3 && u <= 6 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	case t == 15, t == 16:
		if u >= 4 && u <= 6 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	case t == 13, t == 14:
		if u == 5 || u == 6 {
			return orElse(legal, DoubleDown, Hit)
		}
		return Hit
	}
	return Hit // soft 12 (A,A that may not split)
}
