package wallet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"time"

	"github.com/google/uuid"

	"github.com/buzzer-bet/buzzer"
)

// Routes name the requests whose fingerprints bind an idempotency key; the
// HTTP layer uses the same strings so a key sent to one route never matches
// another route's request.
const (
	RouteDeposit    = "POST /v1/wallet/deposits"
	RouteWithdrawal = "POST /v1/wallet/withdrawals"
	RoutePlaceBet   = "POST /v1/bets"
)

// Config is the wallet's configuration. Amounts are minor units.
type Config struct {
	// Jurisdiction is the jurisdiction this wallet's store serves; every
	// account is keyed by it.
	Jurisdiction string `yaml:"jurisdiction"`
	// Buckets splits every house-side account into this many rows.
	Buckets int `yaml:"buckets"`
	// KeyTTL is how long a completed idempotency key is kept (at least 24 h).
	KeyTTL time.Duration `yaml:"key_ttl"`
	// KeyLease is how long an in-flight key refuses other attempts (409)
	// before a retry may take it over, after a crash left it in flight.
	KeyLease time.Duration `yaml:"key_lease"`
	// EffectTimeout bounds one money change, detached from the client.
	EffectTimeout time.Duration `yaml:"effect_timeout"`
	MinStake      buzzer.Amount `yaml:"min_stake"`
	MaxStake      buzzer.Amount `yaml:"max_stake"`
	// MaxPayout caps a bet's potential payout (stake included).
	MaxPayout     buzzer.Amount `yaml:"max_payout"`
	MaxLegs       int           `yaml:"max_legs"`
	MaxDeposit    buzzer.Amount `yaml:"max_deposit"`
	MaxWithdrawal buzzer.Amount `yaml:"max_withdrawal"`
	// SettleBatch is how many bets one settlement transaction handles.
	SettleBatch int `yaml:"settle_batch"`
	// PurgeBatch is how many expired keys one purge transaction deletes.
	PurgeBatch int `yaml:"purge_batch"`
	// RequireDecision refuses deposits, withdrawals and bets that carry no
	// compliance Decision (EFORBIDDEN, reason compliance_required).
	RequireDecision bool `yaml:"require_decision"`
	// BatchMax is the most requests one group commit carries (see
	// batch.go); 0 or 1 runs every request in its own transaction.
	BatchMax int `yaml:"batch_max"`
	// BatchLanes is how many group commits may run at once (at most
	// Buckets); each player's requests always go through the same one.
	// One lane commits a group while the next fills: on two cores that
	// beat 2, 4 and 8 lanes on both throughput and tail (PostgreSQL and
	// SQLite); more lanes pay only where the store has cores to spare.
	BatchLanes int `yaml:"batch_lanes"`
	// BatchLinger is how long a lane waits for more requests before it
	// starts a group smaller than BatchMax/8 (0: at once). Every commit
	// pays a durable flush (an fsync on SQLite); a pause of a few
	// milliseconds when little is queued lets more requests share one.
	BatchLinger time.Duration `yaml:"batch_linger"`
}

// DefaultConfig returns safe defaults; Jurisdiction defaults to "default".
func DefaultConfig() Config {
	return Config{
		Jurisdiction:  "default",
		Buckets:       32,
		KeyTTL:        24 * time.Hour,
		KeyLease:      30 * time.Second,
		EffectTimeout: 10 * time.Second,
		MinStake:      10,          // 0.10
		MaxStake:      1_000_000,   // 10,000.00
		MaxPayout:     100_000_000, // 1,000,000.00
		MaxLegs:       20,
		MaxDeposit:    10_000_000, // 100,000.00
		MaxWithdrawal: 10_000_000,
		SettleBatch:   200,
		PurgeBatch:    1000,
		BatchMax:      128,
		BatchLanes:    1,
		BatchLinger:   2 * time.Millisecond,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	bad := func(f string, a ...any) error { return buzzer.Errorf(buzzer.EINVALID, "wallet "+f, a...) }
	switch {
	case validID(c.Jurisdiction) != nil:
		return bad("jurisdiction must be 1..64 of letters, digits, - _ . :")
	case c.Buckets < 1 || c.Buckets > 4096:
		return bad("buckets must be 1..4096, got %d", c.Buckets)
	case c.KeyTTL < 24*time.Hour:
		return bad("key_ttl must be at least 24h, got %s", c.KeyTTL)
	case c.KeyLease <= 0:
		return bad("key_lease must be > 0")
	case c.EffectTimeout <= 0:
		return bad("effect_timeout must be > 0")
	case c.MinStake < 1 || c.MaxStake < c.MinStake:
		return bad("stakes need 1 <= min_stake <= max_stake")
	case c.MaxPayout < c.MaxStake:
		return bad("max_payout must be >= max_stake")
	case c.MaxLegs < 1 || c.MaxLegs > 50:
		return bad("max_legs must be 1..50, got %d", c.MaxLegs)
	case c.MaxDeposit < 1 || c.MaxWithdrawal < 1:
		return bad("max_deposit and max_withdrawal must be >= 1")
	case c.SettleBatch < 1 || c.SettleBatch > 10000:
		return bad("settle_batch must be 1..10000, got %d", c.SettleBatch)
	case c.PurgeBatch < 1 || c.PurgeBatch > 100000:
		return bad("purge_batch must be 1..100000, got %d", c.PurgeBatch)
	case c.BatchMax < 0 || c.BatchMax > 10000:
		return bad("batch_max must be 0..10000, got %d", c.BatchMax)
	case c.BatchLanes < 0 || c.BatchLanes > 256:
		return bad("batch_lanes must be 0..256, got %d", c.BatchLanes)
	case c.BatchLinger < 0 || c.BatchLinger > time.Second:
		return bad("batch_linger must be 0..1s, got %s", c.BatchLinger)
	}
	return nil
}

// Deps are the wallet's collaborators. Store and Prices are required.
type Deps struct {
	Store  Store
	Prices PriceSource
	// Clock defaults to the system clock.
	Clock buzzer.Clock
	// NewID returns a fresh random ID; defaults to UUID v4.
	NewID func() string
	// Sleep waits d or until ctx ends (the in-play bet delay); defaults to a
	// timer. Tests inject one that advances their clock.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Service is the wallet: the money API, settlement and the checker.
type Service struct {
	cfg    Config
	store  Store
	prices PriceSource
	clock  buzzer.Clock
	newID  func() string
	sleep  func(context.Context, time.Duration) error
	lanes  []*lane // nil: group commit is off
}

// New validates cfg and returns the service.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Prices == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "wallet needs a store and a price source")
	}
	s := &Service{cfg: cfg, store: d.Store, prices: d.Prices, clock: d.Clock, newID: d.NewID, sleep: d.Sleep}
	if s.clock == nil {
		s.clock = buzzer.SystemClock{}
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	if s.sleep == nil {
		s.sleep = timerSleep
	}
	if cfg.BatchMax > 1 {
		n := min(max(cfg.BatchLanes, 1), cfg.Buckets)
		for i := 0; i < n; i++ {
			s.lanes = append(s.lanes, &lane{s: s, index: i})
		}
	}
	return s, nil
}

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// now is the clock's time in UTC at microsecond precision, the precision
// every store keeps, so a time read back equals the time written.
func (s *Service) now() time.Time { return s.clock.Now().UTC().Truncate(time.Microsecond) }

func timerSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "The operation did not finish in time.")
	case <-t.C:
		return nil
	}
}

// Response is a money request's outcome exactly as it must be sent: a
// replay carries the stored status and body byte for byte.
type Response struct {
	Status   int
	Body     []byte
	Replayed bool
}

// Receipt is the response body of a deposit or withdrawal.
type Receipt struct {
	TransactionID string          `json:"transaction_id"`
	Kind          TxnKind         `json:"kind"`
	Amount        buzzer.Amount   `json:"amount"`
	Currency      buzzer.Currency `json:"currency"`
	Balance       buzzer.Amount   `json:"balance"`
	CreatedAt     time.Time       `json:"created_at"`
}

// Fingerprint is the hex SHA-256 of a request's method and route and its
// canonical body (the validated request re-encoded by encoding/json, so
// whitespace and member order do not matter).
func Fingerprint(route string, canonical any) (string, error) {
	b, err := json.Marshal(canonical)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the request")
	}
	h := sha256.New()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ValidateKey checks an Idempotency-Key value: missing is EINVALID.
func ValidateKey(key string) error {
	if key == "" {
		return buzzer.Errorf(buzzer.EINVALID, "The Idempotency-Key header is required for this request.").WithReason("idempotency_key_missing")
	}
	if len(key) > 255 {
		return buzzer.Errorf(buzzer.EINVALID, "The Idempotency-Key must be at most 255 characters.").WithReason("idempotency_key_invalid")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return buzzer.Errorf(buzzer.EINVALID, "The Idempotency-Key must be printable ASCII without spaces.").WithReason("idempotency_key_invalid")
		}
	}
	return nil
}

func (s *Service) bucket(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(s.cfg.Buckets))
}

func (s *Service) playerAccount(player string, c buzzer.Currency, k AccountKind) AccountKey {
	return AccountKey{Owner: player, Jurisdiction: s.cfg.Jurisdiction, Currency: c, Kind: k}
}

func (s *Service) houseAccount(c buzzer.Currency, k AccountKind, bucket int) AccountKey {
	return AccountKey{Owner: HouseOwner, Jurisdiction: s.cfg.Jurisdiction, Currency: c, Kind: k, Bucket: bucket}
}

// effect is a request's state change, described so that it can run alone
// in its own transaction or with others in one group commit (see batch.go).
type effect struct {
	// markets whose result records plan needs.
	markets []string
	plan    planFunc
}

// runAlone applies e inside tx and returns the response to store.
func (s *Service) runAlone(ctx context.Context, tx Tx, now time.Time, effectKey string, e effect) (int, []byte, string, error) {
	results := map[string]*MarketResult{}
	for _, m := range e.markets {
		r, err := tx.GetMarketResult(ctx, m)
		if err != nil {
			return 0, nil, "", err
		}
		if r != nil {
			results[m] = r
		}
	}
	p, err := e.plan(ctx, now, effectKey, s.bucket, results)
	if err != nil {
		return 0, nil, "", err
	}
	after, err := s.apply(ctx, tx, p.txn)
	if err != nil {
		return 0, nil, "", err
	}
	if p.bet != nil {
		if err := tx.InsertBet(ctx, p.bet); err != nil {
			return 0, nil, "", err
		}
	}
	status, body, err := p.answer(after)
	return status, body, p.txn.ID, err
}

// claim takes the key for this attempt (tok) or decides the request without
// running it: a completed record is returned for replay; a different
// fingerprint is 422; a live in-flight record is 409. An in-flight record
// whose lease ran out (its attempt crashed) is taken over.
func (s *Service) claim(ctx context.Context, tx Tx, player, key, fp, tok string, now time.Time, lease time.Duration) (*KeyRecord, error) {
	rec := &KeyRecord{Player: player, Key: key, Fingerprint: fp, State: KeyInFlight, Owner: tok,
		LockedUntil: now.Add(lease), CreatedAt: now, ExpiresAt: now.Add(s.cfg.KeyTTL)}
	ok, err := tx.InsertKey(ctx, rec)
	if err != nil || ok {
		return nil, err
	}
	old, err := tx.GetKey(ctx, player, key)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, errInFlight()
	}
	if old.State == KeyInFlight && old.Owner == tok {
		return nil, nil // this attempt's own claim
	}
	if old.Fingerprint != fp {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "This Idempotency-Key was already used for a different request.").WithReason("idempotency_key_reused")
	}
	if old.State == KeyCompleted {
		return old, nil
	}
	if old.LockedUntil.After(now) {
		return nil, errInFlight()
	}
	old.Owner, old.LockedUntil = tok, now.Add(lease)
	return nil, tx.UpdateKey(ctx, old)
}

func errInFlight() error {
	return buzzer.Errorf(buzzer.ECONFLICT, "A request with this Idempotency-Key is still being processed.").WithReason("idempotency_key_in_flight")
}

func complete(ctx context.Context, tx Tx, player, key, fp, tok string, now time.Time, ttl time.Duration, status int, body []byte, effectID string) error {
	rec := &KeyRecord{Player: player, Key: key, Fingerprint: fp, State: KeyCompleted, Owner: tok, LockedUntil: now,
		Status: status, Body: body, EffectID: effectID, ExpiresAt: now.Add(ttl)}
	old, err := tx.GetKey(ctx, player, key)
	if err != nil {
		return err
	}
	if old == nil || old.Owner != tok || old.State != KeyInFlight {
		return errInFlight()
	}
	rec.CreatedAt = old.CreatedAt
	return tx.UpdateKey(ctx, rec)
}

// storedRejection is how a refused request's answer is kept with its key
// (Status 0 in the record): the same code, reason and message come back on
// every replay, so a resent request can never be refused once and accepted
// later, or the other way round.
type storedRejection struct {
	Code    string `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

func storedRejectionBody(rejected error) ([]byte, error) {
	body, err := json.Marshal(storedRejection{Code: buzzer.ErrorCode(rejected), Reason: buzzer.ErrorReason(rejected), Message: buzzer.ErrorMessage(rejected)})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the rejection")
	}
	return body, nil
}

func replay(rec *KeyRecord) (*Response, error) {
	if rec.Status == 0 {
		var r storedRejection
		if err := json.Unmarshal(rec.Body, &r); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored rejection is corrupt")
		}
		return nil, &buzzer.Error{Code: r.Code, Reason: r.Reason, Message: r.Message}
	}
	return &Response{Status: rec.Status, Body: rec.Body, Replayed: true}, nil
}

// keyError reports whether err is the idempotency layer's own answer, which
// is never stored.
func keyError(err error) bool {
	switch buzzer.ErrorReason(err) {
	case "idempotency_key_reused", "idempotency_key_in_flight", "idempotency_key_missing", "idempotency_key_invalid":
		return true
	default:
		return false
	}
}

// recordRejection stores rejected (the effect's refusal, already rolled
// back) as the key's answer, unless another attempt decided the key first,
// in which case that attempt's answer is returned instead.
func (s *Service) recordRejection(ctx context.Context, player, key, fp, tok string, rejected error) (*Response, error) {
	body, err := storedRejectionBody(rejected)
	if err != nil {
		return nil, err
	}
	var resp *Response
	var answer error
	err = s.store.InTx(ctx, func(tx Tx) error {
		resp, answer = nil, nil
		now := s.now()
		rec, err := s.claim(ctx, tx, player, key, fp, tok, now, s.cfg.KeyLease)
		if err != nil {
			return err
		}
		if rec != nil {
			resp, answer = replay(rec)
			return nil
		}
		answer = rejected
		return complete(ctx, tx, player, key, fp, tok, now, s.cfg.KeyTTL, 0, body, "")
	})
	if err != nil {
		return nil, err
	}
	return resp, answer
}

// execute runs effect exactly once per (player, key). With delay zero the key
// record is inserted and completed in the effect's own transaction, so a crash
// leaves both or neither, and a concurrent duplicate waits on the store and
// then replays. With a delay (in-play bets) the key is first committed in
// flight, so duplicates get 409 while the delay runs, then the effect and
// the completed record commit together; a rejected effect releases the key.
// A refusal by the effect (insufficient funds, price changed, ...) is
// stored as the key's answer too, in a second transaction after the effect's
// rolled back, so every send of one key gets one answer.
func (s *Service) execute(ctx context.Context, player, key, fp string, delay time.Duration, e effect) (*Response, error) {
	if err := validID(player); err != nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "player id is invalid")
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if delay == 0 && s.lanes != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EffectTimeout)
		defer cancel()
		return s.executeBatched(ctx, player, key, fp, e)
	}
	// A money change runs detached from the caller's cancellation, bounded by
	// its own timeout, so a disconnect never leaves its outcome unknown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EffectTimeout+delay)
	defer cancel()
	tok := s.newID()
	effectKey := player + "/" + key
	var (
		resp  *Response
		prior *KeyRecord // the key's stored answer, to replay
	)
	run := func(tx Tx, now time.Time) error {
		status, body, id, err := s.runAlone(ctx, tx, now, effectKey, e)
		if err != nil {
			return err
		}
		if err := complete(ctx, tx, player, key, fp, tok, now, s.cfg.KeyTTL, status, body, id); err != nil {
			return err
		}
		resp = &Response{Status: status, Body: body}
		return nil
	}
	lease := s.cfg.KeyLease
	if delay > 0 {
		lease += delay
	}
	err := s.store.InTx(ctx, func(tx Tx) error {
		resp, prior = nil, nil
		now := s.now()
		rec, err := s.claim(ctx, tx, player, key, fp, tok, now, lease)
		if err != nil {
			return err
		}
		if rec != nil {
			prior = rec
			return nil
		}
		if delay > 0 {
			return nil // commit the claim; the effect runs after the delay
		}
		return run(tx, now)
	})
	if err == nil && prior != nil {
		return replay(prior)
	}
	if err == nil && delay > 0 {
		if err := s.sleep(ctx, delay); err != nil {
			return nil, err
		}
		err = s.store.InTx(ctx, func(tx Tx) error {
			resp = nil
			return run(tx, s.now())
		})
	}
	if err != nil && rejection(err) && !keyError(err) {
		return s.recordRejection(ctx, player, key, fp, tok, err)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// rejection reports whether err is a decided refusal (nothing was applied
// and nothing is in doubt), as opposed to a fault.
func rejection(err error) bool {
	switch buzzer.ErrorCode(err) {
	case buzzer.EINVALID, buzzer.EUNPROCESSABLE, buzzer.ENOTFOUND, buzzer.EFORBIDDEN:
		return true
	default:
		return false
	}
}

// Deposit credits the player's cash from the deposits clearing account.
func (s *Service) Deposit(ctx context.Context, player, key string, req MoneyRequest) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Amount > s.cfg.MaxDeposit {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "A deposit may be at most %d minor units.", s.cfg.MaxDeposit).WithReason("deposit_limit")
	}
	return s.moveMoney(ctx, player, key, RouteDeposit, TxnDeposit, req, KindDepositsClearing, req.Amount)
}

// Withdraw debits the player's cash into the withdrawals clearing account.
func (s *Service) Withdraw(ctx context.Context, player, key string, req MoneyRequest) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Amount > s.cfg.MaxWithdrawal {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "A withdrawal may be at most %d minor units.", s.cfg.MaxWithdrawal).WithReason("withdrawal_limit")
	}
	return s.moveMoney(ctx, player, key, RouteWithdrawal, TxnWithdrawal, req, KindWithdrawalsClearing, -req.Amount)
}

func (s *Service) moveMoney(ctx context.Context, player, key, route string, kind TxnKind, req MoneyRequest, house AccountKind, delta buzzer.Amount) (*Response, error) {
	decision, err := s.admit(req.Decision)
	if err != nil {
		return nil, err
	}
	fp, err := Fingerprint(route, req)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, player, key, fp, 0, s.transfer(player, kind, "", req.Amount, req.Currency, house, delta, decision))
}

// transfer is the effect of a deposit, withdrawal or table movement: delta
// into the player's cash against a house bucket, answered with a receipt.
func (s *Service) transfer(player string, kind TxnKind, reference string, amount buzzer.Amount, c buzzer.Currency, house AccountKind, delta buzzer.Amount, d *Decision) effect {
	return effect{plan: func(_ context.Context, now time.Time, effectKey string, bucket func(string) int, _ map[string]*MarketResult) (*plan, error) {
		id := s.newID()
		t := &Transaction{ID: id, Kind: kind, Player: player, Reference: reference, EffectKey: effectKey, CreatedAt: now, Decision: d, Postings: []Posting{
			{Account: s.playerAccount(player, c, KindCash), Amount: delta},
			{Account: s.houseAccount(c, house, bucket(id)), Amount: -delta},
		}}
		return &plan{txn: t, answer: func(after []buzzer.Amount) (int, []byte, error) {
			body, err := json.Marshal(Receipt{TransactionID: id, Kind: kind, Amount: amount, Currency: c, Balance: after[0], CreatedAt: now})
			if err != nil {
				return 0, nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the receipt")
			}
			return 201, body, nil
		}}, nil
	}}
}

// apply validates and stores t, then enforces the sign rules on the
// balances it left; a violation rolls the whole transaction back.
func (s *Service) apply(ctx context.Context, tx Tx, t *Transaction) ([]buzzer.Amount, error) {
	t.CreatedAt = t.CreatedAt.UTC()
	if err := t.Validate(); err != nil {
		return nil, err
	}
	after, err := tx.ApplyTransaction(ctx, t)
	if err != nil {
		return nil, err
	}
	return after, checkBalances(t, after)
}

// Balances returns the player's accounts.
func (s *Service) Balances(ctx context.Context, player string) ([]Account, error) {
	if err := validID(player); err != nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "player id is invalid")
	}
	var out []Account
	err := s.store.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Accounts(ctx, player)
		return err
	})
	return out, err
}

// Entries returns one page of the player's ledger history, newest first,
// and the cursor of the next page ("" when there is none).
func (s *Service) Entries(ctx context.Context, player, cursor string, limit int) ([]Entry, string, error) {
	if err := validID(player); err != nil {
		return nil, "", buzzer.Errorf(buzzer.EINVALID, "player id is invalid")
	}
	c, err := ParseEntryCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = clampLimit(limit)
	var out []Entry
	err = s.store.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Entries(ctx, player, c, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = EntryCursor{CreatedAt: last.CreatedAt, TransactionID: last.TransactionID}.String()
	}
	return out, next, nil
}

func clampLimit(n int) int {
	if n <= 0 {
		return 50
	}
	if n > 200 {
		return 200
	}
	return n
}

// PurgeKeys deletes completed idempotency keys past their TTL, in batches,
// and returns how many it deleted.
func (s *Service) PurgeKeys(ctx context.Context) (int, error) {
	total := 0
	for {
		var n int
		err := s.store.InTx(ctx, func(tx Tx) error {
			var err error
			n, err = tx.PurgeKeys(ctx, s.now(), s.cfg.PurgeBatch)
			return err
		})
		total += n
		if err != nil || n < s.cfg.PurgeBatch {
			return total, err
		}
	}
}

// RunPurger purges expired keys every interval until ctx ends. The caller
// owns the goroutine it runs in; errors are passed to onErr (may be nil).
func (s *Service) RunPurger(ctx context.Context, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.PurgeKeys(ctx); err != nil && onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}
