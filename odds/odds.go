// Package odds owns Buzzer's canonical live-odds model and its state engine:
// events, markets and selections with exact decimal prices, the normalized
// updates that feed adapters produce, and the engine that folds those updates
// into current state per event and emits ordered deltas (one per change, with a
// per-event sequence number). It also owns the parity rules: a silent or
// untrusted provider's markets are suspended or failed over, diverging prices
// suspend, markets missing from a full image are removed.
//
// It must never import an engine (NATS, Kafka, SQL, Redis) or a transport
// (net/http, sockets): adapters live in feed/, the stream backbone and fan-out
// elsewhere. It never uses a float for a price.
package odds

import (
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Sport names the sport of an event.
type Sport string

// Sports Buzzer's simulated providers cover.
const (
	Football         Sport = "football"
	AmericanFootball Sport = "american_football"
)

// MarketType is the canonical kind of a market.
type MarketType string

// Canonical market types.
const (
	MatchResult MarketType = "match_result" // 1X2: home, draw, away
	Moneyline   MarketType = "moneyline"    // two-way winner: home, away
	Totals      MarketType = "totals"       // over/under a line
	Handicap    MarketType = "handicap"     // home/away with the home side's line (spread)
)

// Valid reports whether t is a known market type.
func (t MarketType) Valid() bool {
	switch t {
	case MatchResult, Moneyline, Totals, Handicap:
		return true
	default:
		return false
	}
}

// HasLine reports whether markets of type t are identified by a line.
func (t MarketType) HasLine() bool { return t == Totals || t == Handicap }

// MarketStatus is the canonical lifecycle state of a market.
type MarketStatus string

// Market statuses. Only an open market takes bets.
const (
	Open      MarketStatus = "open"
	Suspended MarketStatus = "suspended"
	Closed    MarketStatus = "closed"
	Settled   MarketStatus = "settled"
)

// Result is a selection's settlement outcome.
type Result string

// Selection results.
const (
	Won  Result = "won"
	Lost Result = "lost"
	Void Result = "void"
)

// Canonical selection ids, unique within a market.
const (
	Home  = "home"
	Draw  = "draw"
	Away  = "away"
	Over  = "over"
	Under = "under"
)

// Line is a market line (a total or a handicap) as an exact decimal with two
// fractional digits: Line(250) is 2.5, Line(-150) is -1.5, Line(-25) is -0.25.
type Line int64

// ParseLine parses a decimal line such as "2.5", "-1.5", "+3" or "-0.25"
// exactly; more than two fractional digits is an error.
func ParseLine(s string) (Line, error) {
	bad := func() error {
		return buzzer.Errorf(buzzer.EINVALID, "line %q is not a decimal with at most 2 fractional digits", s)
	}
	if s == "" || len(s) > 12 {
		return 0, bad()
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	ip, fp, _ := strings.Cut(s, ".")
	if ip == "" || len(fp) > 2 {
		return 0, bad()
	}
	for _, r := range ip + fp {
		if r < '0' || r > '9' {
			return 0, bad()
		}
	}
	i, err := strconv.ParseInt(ip, 10, 32)
	if err != nil {
		return 0, bad()
	}
	for len(fp) < 2 {
		fp += "0"
	}
	f, _ := strconv.ParseInt(fp, 10, 64)
	v := Line(i*100 + f)
	if neg {
		v = -v
	}
	return v, nil
}

// String formats the line with its significant fractional digits ("2.5", "-1.5", "3").
func (l Line) String() string {
	sign := ""
	v := int64(l)
	if v < 0 {
		sign, v = "-", -v
	}
	s := sign + strconv.FormatInt(v/100, 10)
	switch f := v % 100; {
	case f == 0:
	case f%10 == 0:
		s += "." + strconv.FormatInt(f/10, 10)
	default:
		s += "." + strconv.FormatInt(f/10, 10) + strconv.FormatInt(f%10, 10)
	}
	return s
}

// MarshalText encodes the line as its decimal string.
func (l Line) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText decodes a decimal string.
func (l *Line) UnmarshalText(b []byte) error {
	v, err := ParseLine(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// MarketID returns the canonical, globally unique id of the market of type t
// (with line, where the type has one) in event eventID, e.g.
// "ev-12:totals:2.5" or "ev-12:match_result". Every provider's market of the
// same type and line maps to the same id, which is how providers are compared.
func MarketID(eventID string, t MarketType, line Line) string {
	if t.HasLine() {
		return eventID + ":" + string(t) + ":" + line.String()
	}
	return eventID + ":" + string(t)
}

// Fixture is what the catalog knows about an event before any odds arrive.
type Fixture struct {
	EventID   string    `json:"event_id"`
	Sport     Sport     `json:"sport"`
	Home      string    `json:"home"`
	Away      string    `json:"away"`
	StartTime time.Time `json:"start_time"`
	// Providers, if set, overrides the engine's provider priority for this
	// event: the first trusted one drives it.
	Providers []string `json:"providers,omitempty"`
}

// Score is the running score of an event.
type Score struct {
	Home int `json:"home"`
	Away int `json:"away"`
}

// Selection is one outcome of a market with its current price.
type Selection struct {
	ID string `json:"id"`
	// Price is zero when the provider quotes none (the market is then not bettable).
	Price buzzer.Price `json:"price,omitempty"`
	// Result and the factors are set once the market is settled.
	Result     Result `json:"result,omitempty"`
	VoidFactor string `json:"void_factor,omitempty"` // exact decimal as the provider sent it ("0.5")
}

// Market is one market of an event.
type Market struct {
	ID         string       `json:"id"`
	Type       MarketType   `json:"type"`
	Line       Line         `json:"line"`
	Status     MarketStatus `json:"status"`
	Selections []Selection  `json:"selections"`
	// Provider is the provider whose view is published (set by the engine).
	Provider string `json:"provider,omitempty"`
	// Version is the event sequence number of this market's last change (set by the engine).
	Version uint64 `json:"version"`
}

// Selection returns the selection with id, if any.
func (m *Market) Selection(id string) (Selection, bool) {
	for _, s := range m.Selections {
		if s.ID == id {
			return s, true
		}
	}
	return Selection{}, false
}

func (m *Market) clone() *Market {
	c := *m
	c.Selections = append([]Selection(nil), m.Selections...)
	return &c
}

// sameContent reports whether a and b publish the same thing (ignoring Version).
func sameContent(a, b *Market) bool {
	if a.ID != b.ID || a.Type != b.Type || a.Line != b.Line || a.Status != b.Status ||
		a.Provider != b.Provider || len(a.Selections) != len(b.Selections) {
		return false
	}
	for i := range a.Selections {
		if a.Selections[i] != b.Selections[i] {
			return false
		}
	}
	return true
}

// EventInfo is the event-level state: fixture plus live status.
type EventInfo struct {
	Fixture
	InPlay bool   `json:"in_play"`
	Ended  bool   `json:"ended"`
	Score  *Score `json:"score,omitempty"`
	// Provider is the provider currently driving the event ("" if none is trusted).
	Provider string `json:"provider"`
}

// UpdateKind says what a normalized update carries.
type UpdateKind string

// Update kinds.
const (
	// KindOdds carries event state and market changes (odds change, bet stop,
	// settlement, or a full image when Full is set).
	KindOdds UpdateKind = "odds"
	// KindAlive is a provider heartbeat: it proves the provider is live.
	KindAlive UpdateKind = "alive"
	// KindStatus reports the adapter's view of the provider's health: Up after it
	// has recovered (snapshot / initial image), Down when its heartbeat interval
	// or processing lag bound was violated or the connection dropped.
	KindStatus UpdateKind = "status"
)

// ProviderStatus is an adapter's health verdict on its provider.
type ProviderStatus string

// Provider statuses.
const (
	ProviderUp   ProviderStatus = "up"
	ProviderDown ProviderStatus = "down"
)

// Update is one normalized message from a feed adapter. Prices are exact,
// ids are canonical.
type Update struct {
	Provider string     `json:"provider"`
	Kind     UpdateKind `json:"kind"`
	// Status is set for KindStatus.
	Status ProviderStatus `json:"status,omitempty"`
	// EventID is set for KindOdds.
	EventID string `json:"event_id,omitempty"`
	InPlay  *bool  `json:"in_play,omitempty"`
	Ended   bool   `json:"ended,omitempty"`
	Score   *Score `json:"score,omitempty"`
	// Full means Markets is the provider's complete set for the event: any
	// market it drove before that is absent here is removed.
	Full bool `json:"full,omitempty"`
	// SuspendAll suspends every market the provider has for the event (a bet stop).
	SuspendAll bool           `json:"suspend_all,omitempty"`
	Markets    []MarketUpdate `json:"markets,omitempty"`
	Reason     string         `json:"reason,omitempty"`   // e.g. "bet_stop", "settlement"
	SourceTime time.Time      `json:"source_time"`        // the provider's own timestamp
	Position   string         `json:"position,omitempty"` // provider position (clk token, message timestamp) for tracing
}

// MarketUpdate is a change to one market in a provider's view. Selections
// listed replace those with the same id; others are kept unless the market is
// new.
type MarketUpdate struct {
	Type       MarketType   `json:"type"`
	Line       Line         `json:"line"`
	Status     MarketStatus `json:"status"`
	Selections []Selection  `json:"selections,omitempty"`
}

// DeltaKind says what a delta changes.
type DeltaKind string

// Delta kinds.
const (
	DeltaEvent         DeltaKind = "event"          // event-level state changed (in-play, score, driving provider)
	DeltaMarket        DeltaKind = "market"         // a market was added or changed: Market is its full new state
	DeltaMarketRemoved DeltaKind = "market_removed" // a market was withdrawn: MarketID says which
)

// Delta is one change to one event's published state. Seq is the event's
// sequence number: consecutive, starting at 1, strictly ordered per event.
// It carries the full new state of what it changes, so applying the latest
// delta per market (conflation) yields the same state as applying all.
type Delta struct {
	EventID  string     `json:"event_id"`
	Seq      uint64     `json:"seq"`
	Kind     DeltaKind  `json:"kind"`
	Event    *EventInfo `json:"event,omitempty"`
	Market   *Market    `json:"market,omitempty"`
	MarketID string     `json:"market_id,omitempty"`
	// Reason explains suspensions and removals: "provider_unavailable",
	// "price_divergence", "not_offered", or the provider's own ("bet_stop", ...).
	Reason string `json:"reason,omitempty"`
	// SourceTime is the provider's timestamp of the message that caused the
	// delta (zero for engine-initiated changes such as a silence suspension).
	SourceTime time.Time `json:"source_time"`
	// At is the engine's time of the change.
	At time.Time `json:"at"`
}

// Snapshot is an event's full published state at sequence Seq.
type Snapshot struct {
	Event   EventInfo `json:"event"`
	Markets []Market  `json:"markets"`
	Seq     uint64    `json:"seq"`
}

// Quote is the live price of one selection, as bet placement needs it.
type Quote struct {
	Price  buzzer.Price
	Status MarketStatus
	// Version is the event sequence number of the market's last change.
	Version uint64
	InPlay  bool
}
