package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/wallet"
)

// The group-commit half of the wallet store: each method is one round trip
// whatever the batch's size (multi-row statements over unnest()ed arrays,
// pipelined in one pgx.Batch where a method has several). Through
// InGroupTx, ReadGroup and ApplyGroup a group is three round trips in all:
// BEGIN with the claims, results, account locks (and, capturing, the audit
// counter locks); every write with the audit records; COMMIT.

// decisionCols splits a decision into its nullable columns.
func decisionCols(d *wallet.Decision) (jur, hash *string, at *time.Time, src *string) {
	if d == nil {
		return nil, nil, nil, nil
	}
	return &d.Jurisdiction, &d.TokenHash, &d.DecidedAt, &d.Source
}

// scanDecision rebuilds a decision from its nullable columns.
func scanDecision(jur, hash *string, at *time.Time, src *string) *wallet.Decision {
	if jur == nil || hash == nil || at == nil || src == nil {
		return nil
	}
	return &wallet.Decision{Jurisdiction: *jur, TokenHash: *hash, DecidedAt: at.UTC(), Source: *src}
}

const keyColumns = `fingerprint, state, owner, locked_until, status, body, effect_id, created_at, expires_at`

func (t walletTx) ClaimKeys(ctx context.Context, recs []*wallet.KeyRecord) ([]*wallet.KeyRecord, error) {
	n := len(recs)
	// ON CONFLICT's arbiter check reads with a dirty snapshot and takes no
	// SIREAD lock, so claiming fresh keys adds nothing to SSI's read set; a
	// key committed meanwhile by another transaction fails the claim with
	// 40001 and the batch is retried. Only the keys that were there already
	// are read back, in a second statement.
	sql, args := keyUpsert(recs, `ON CONFLICT (player_id, key) DO NOTHING
		RETURNING player_id, key`)
	rows, err := t.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	inserted := map[[2]string]bool{}
	for rows.Next() {
		var p, k string
		if err := rows.Scan(&p, &k); err != nil {
			rows.Close()
			return nil, err
		}
		inserted[[2]string{p, k}] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*wallet.KeyRecord, n)
	var oldP, oldK []string
	for i, k := range recs {
		if inserted[[2]string{k.Player, k.Key}] {
			out[i] = k
		} else {
			oldP, oldK = append(oldP, k.Player), append(oldK, k.Key)
		}
	}
	if len(oldP) == 0 {
		return out, nil
	}
	rows, err = t.tx.Query(ctx, `SELECT w.player_id, w.key, w.fingerprint, w.state, w.owner, w.locked_until, w.status, w.body, w.effect_id, w.created_at, w.expires_at
		FROM wallet_idempotency_keys w JOIN unnest($1::TEXT[], $2::TEXT[]) AS u(p, k) ON w.player_id = u.p AND w.key = u.k`, oldP, oldK)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[[2]string]*wallet.KeyRecord{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		found[[2]string{k.Player, k.Key}] = k
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, k := range recs {
		if out[i] == nil {
			out[i] = found[[2]string{k.Player, k.Key}]
		}
	}
	return out, nil
}

var (
	_ wallet.GroupTx = walletTx{}
	_ wallet.GroupTx = auditedWalletTx{}
)

// ReadGroup implements wallet.GroupTx: the claims, the markets' results and
// the account locks in one pipelined round trip. Unlike ClaimKeys, the
// claim is an upsert that also locks and returns the keys that were there
// already (a no-op update, which like ON CONFLICT DO NOTHING adds nothing to
// SSI's read set), so a batch holding a resent key needs no second
// statement to read it back.
func (t walletTx) ReadGroup(ctx context.Context, g *wallet.GroupRead) error {
	return t.readGroup(ctx, g, nil)
}

// ApplyGroup implements wallet.GroupTx.
func (t walletTx) ApplyGroup(ctx context.Context, _ *wallet.GroupRead, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	if len(keys) == 0 {
		return nil
	}
	return t.applyBatch(ctx, txns, bets, keys, false, true)
}

// groupExtra is one more statement for readGroup's pipeline: queue adds it
// and read consumes its result.
type groupExtra struct {
	queue func(b *pgx.Batch) bool
	read  func(br pgx.BatchResults) error
}

func (t walletTx) readGroup(ctx context.Context, g *wallet.GroupRead, extra *groupExtra) error {
	b := &pgx.Batch{}
	if len(g.Claims) > 0 {
		queueKeyUpsert(b, g.Claims, `ON CONFLICT (player_id, key) DO UPDATE SET state = wallet_idempotency_keys.state
			RETURNING player_id, key, `+keyColumns)
	}
	ms := slices.Compact(slices.Sorted(slices.Values(g.Markets)))
	if len(ms) > 0 {
		b.Queue(marketResultsSQL, ms)
	}
	var accounts []wallet.AccountKey
	for _, txn := range g.Txns {
		for _, q := range txn.Postings {
			accounts = append(accounts, q.Account)
		}
	}
	ids, owners, jurs, curs, kinds, buckets := accountArrays(accounts)
	if len(ids) > 0 {
		b.Queue(lockBalancesSQL, ids, owners, jurs, curs, kinds, buckets)
	}
	hasExtra := extra != nil && extra.queue(b)
	g.Stored, g.Results, g.Balances = make([]*wallet.KeyRecord, len(g.Claims)), map[string]*wallet.MarketResult{}, map[string]buzzer.Amount{}
	if b.Len() == 0 {
		return nil
	}
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	if len(g.Claims) > 0 {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		found := make(map[[2]string]*wallet.KeyRecord, len(g.Claims))
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				rows.Close()
				return err
			}
			found[[2]string{k.Player, k.Key}] = k
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i, k := range g.Claims {
			g.Stored[i] = found[[2]string{k.Player, k.Key}]
		}
	}
	if len(ms) > 0 {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		if err := scanMarketResults(rows, g.Results); err != nil {
			return err
		}
	}
	if len(ids) > 0 {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		if err := scanBalances(rows, g.Balances); err != nil {
			return err
		}
	}
	if hasExtra {
		if err := extra.read(br); err != nil {
			return err
		}
	}
	return br.Close()
}

// queueKeyUpsert queues the multi-row insert of recs followed by conflict
// (its ON CONFLICT clause and any RETURNING).
func queueKeyUpsert(b *pgx.Batch, recs []*wallet.KeyRecord, conflict string) {
	sql, args := keyUpsert(recs, conflict)
	b.Queue(sql, args...)
}

// keyUpsert is the multi-row insert of recs followed by conflict, with its
// arguments (one array per column).
func keyUpsert(recs []*wallet.KeyRecord, conflict string) (string, []any) {
	n := len(recs)
	players, keys, fps, states, owners := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	locked, created, expires := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	statuses, effects := make([]int32, n), make([]string, n)
	bodies := make([][]byte, n)
	for i, k := range recs {
		players[i], keys[i], fps[i], states[i], owners[i] = k.Player, k.Key, k.Fingerprint, string(k.State), k.Owner
		locked[i], created[i], expires[i] = k.LockedUntil, k.CreatedAt, k.ExpiresAt
		statuses[i], effects[i], bodies[i] = int32(k.Status), k.EffectID, k.Body
	}
	return `INSERT INTO wallet_idempotency_keys (player_id, key, ` + keyColumns + `)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[], $7::INT[], $8::BYTEA[], $9::TEXT[], $10::TIMESTAMPTZ[], $11::TIMESTAMPTZ[])
		` + conflict,
		[]any{players, keys, fps, states, owners, locked, statuses, bodies, effects, created, expires}
}

// scanKey reads one row of player_id, key and keyColumns.
func scanKey(rows pgx.Rows) (*wallet.KeyRecord, error) {
	k := &wallet.KeyRecord{}
	var state string
	var status int32
	if err := rows.Scan(&k.Player, &k.Key, &k.Fingerprint, &state, &k.Owner, &k.LockedUntil, &status, &k.Body, &k.EffectID, &k.CreatedAt, &k.ExpiresAt); err != nil {
		return nil, err
	}
	k.State, k.Status = wallet.KeyState(state), int(status)
	k.LockedUntil, k.CreatedAt, k.ExpiresAt = utc(k.LockedUntil), utc(k.CreatedAt), utc(k.ExpiresAt)
	return k, nil
}

const marketResultsSQL = `SELECT market_id, result_version, fingerprint, outcomes, settled_by, done, updated_at
		FROM wallet_market_results WHERE market_id = ANY($1)`

func scanMarketResults(rows pgx.Rows, out map[string]*wallet.MarketResult) error {
	defer rows.Close()
	for rows.Next() {
		r := &wallet.MarketResult{}
		var outcomes []byte
		if err := rows.Scan(&r.MarketID, &r.ResultVersion, &r.Fingerprint, &outcomes, &r.SettledBy, &r.Done, &r.UpdatedAt); err != nil {
			return err
		}
		if err := json.Unmarshal(outcomes, &r.Outcomes); err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "stored market result is corrupt")
		}
		r.UpdatedAt = utc(r.UpdatedAt)
		out[r.MarketID] = r
	}
	return rows.Err()
}

// A no-op upsert, not SELECT ... FOR UPDATE: it locks the rows (in ID
// order, the order of its input) and returns their latest balances without
// adding them to SSI's read set, where a batch's hundreds of row locks
// would be promoted to a relation lock that conflicts with every concurrent
// writer. A row changed since the snapshot fails with 40001, as any
// SERIALIZABLE write does.
const lockBalancesSQL = `INSERT INTO wallet_accounts (id, owner, jurisdiction, currency, kind, bucket, balance)
		SELECT i, o, j, c, k, b, 0 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INT[]) AS u(i, o, j, c, k, b)
		ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance
		RETURNING id, balance`

// accountArrays returns the distinct accounts of keys in ascending ID
// order (the lock order) as column arrays.
func accountArrays(keys []wallet.AccountKey) (ids, owners, jurs, curs, kinds []string, buckets []int32) {
	byID := map[string]wallet.AccountKey{}
	for _, k := range keys {
		byID[k.ID()] = k
	}
	ids = make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	n := len(ids)
	owners, jurs, curs, kinds, buckets = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]int32, n)
	for i, id := range ids {
		k := byID[id]
		owners[i], jurs[i], curs[i], kinds[i], buckets[i] = k.Owner, k.Jurisdiction, string(k.Currency), string(k.Kind), int32(k.Bucket)
	}
	return ids, owners, jurs, curs, kinds, buckets
}

func scanBalances(rows pgx.Rows, out map[string]buzzer.Amount) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var bal int64
		if err := rows.Scan(&id, &bal); err != nil {
			return err
		}
		out[id] = buzzer.Amount(bal)
	}
	return rows.Err()
}

func (t walletTx) MarketResults(ctx context.Context, markets []string) (map[string]*wallet.MarketResult, error) {
	ms := slices.Compact(slices.Sorted(slices.Values(markets)))
	rows, err := t.tx.Query(ctx, marketResultsSQL, ms)
	if err != nil {
		return nil, err
	}
	out := map[string]*wallet.MarketResult{}
	return out, scanMarketResults(rows, out)
}

func (t walletTx) LockBalances(ctx context.Context, keys []wallet.AccountKey) (map[string]buzzer.Amount, error) {
	ids, owners, jurs, curs, kinds, buckets := accountArrays(keys)
	rows, err := t.tx.Query(ctx, lockBalancesSQL, ids, owners, jurs, curs, kinds, buckets)
	if err != nil {
		return nil, err
	}
	out := make(map[string]buzzer.Amount, len(ids))
	return out, scanBalances(rows, out)
}

func (t walletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	return t.applyBatch(ctx, txns, bets, keys, false, false)
}

// applyBatch is ApplyBatch; with capture it also writes the audit records
// of the transactions and bets, as the audited store's one-at-a-time
// methods do: their sequence counters are taken in the same round trip as
// the writes, and the records are inserted in one more. final says the
// writes are the transaction's last statements (ApplyGroup's): without
// capture they go with its COMMIT (sendFinal).
func (t walletTx) applyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord, capture, final bool) error {
	var cap *auditBatch
	if capture {
		var err error
		if cap, err = collectAudit(ctx, txns, bets); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	if err := queueWrites(b, txns, bets, keys); err != nil {
		return err
	}
	writes := b.Len()
	if cap != nil {
		cap.queueSequences(b)
	}
	var br pgx.BatchResults
	if final && cap == nil { // with capture, the records' insert follows
		br = sendFinal(ctx, t.tx, b)
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	defer br.Close()
	if err := execWrites(br, writes, len(keys)); err != nil {
		return err
	}
	if cap != nil {
		if err := cap.readSequences(br); err != nil {
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	if cap != nil {
		return cap.insert(ctx, t.tx)
	}
	return nil
}

// queueWrites queues a group's writes: its transactions with their postings
// and balance changes, its bets with their legs, and its completed keys
// (last).
func queueWrites(b *pgx.Batch, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	if len(txns) > 0 {
		queueTransactions(b, txns)
	}
	if len(bets) > 0 {
		if err := queueBets(b, bets); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		// An upsert rather than UPDATE ... FROM: an UPDATE's scan adds the
		// key index to SSI's read set (promoted to a relation lock for a
		// batch's many rows), and every other lane's new keys would then
		// conflict with it. The rows exist: this transaction claimed them.
		queueKeyUpsert(b, keys, `ON CONFLICT (player_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, owner = EXCLUDED.owner,
				locked_until = EXCLUDED.locked_until, status = EXCLUDED.status, body = EXCLUDED.body, effect_id = EXCLUDED.effect_id,
				created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`)
	}
	return nil
}

// execWrites reads the results of the writes statements queueWrites
// queued, the last of which wrote nkeys keys.
func execWrites(br pgx.BatchResults, writes, nkeys int) error {
	for i := 0; i < writes; i++ {
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if i == writes-1 && nkeys > 0 && tag.RowsAffected() != int64(nkeys) {
			return buzzer.Errorf(buzzer.EINTERNAL, "updated %d of %d idempotency keys", tag.RowsAffected(), nkeys)
		}
	}
	return nil
}

// queueTransactions queues three statements: the transactions, their
// postings, and one upsert of every account touched with its net change,
// rows in account-ID order (the lock order).
func queueTransactions(b *pgx.Batch, txns []*wallet.Transaction) {
	n := len(txns)
	ids, kinds, players, refs, effects := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	at := make([]time.Time, n)
	dj, dh, ds := make([]*string, n), make([]*string, n), make([]*string, n)
	da := make([]*time.Time, n)
	var pAcct, pTxn, pOwner []string
	var pAmount []int64
	var pAt []time.Time
	delta := map[string]int64{}
	acct := map[string]wallet.AccountKey{}
	for i, t := range txns {
		ids[i], kinds[i], players[i], refs[i], effects[i], at[i] = t.ID, string(t.Kind), t.Player, t.Reference, t.EffectKey, t.CreatedAt
		dj[i], dh[i], da[i], ds[i] = decisionCols(t.Decision)
		for _, p := range t.Postings {
			id := p.Account.ID()
			pAcct, pTxn, pOwner, pAmount, pAt = append(pAcct, id), append(pTxn, t.ID), append(pOwner, p.Account.Owner), append(pAmount, int64(p.Amount)), append(pAt, t.CreatedAt)
			delta[id] += int64(p.Amount)
			acct[id] = p.Account
		}
	}
	b.Queue(`INSERT INTO wallet_transactions (id, kind, player_id, reference, effect_key, created_at,
			decision_jurisdiction, decision_token_hash, decision_at, decision_source)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[], $7::TEXT[], $8::TEXT[], $9::TIMESTAMPTZ[], $10::TEXT[])`,
		ids, kinds, players, refs, effects, at, dj, dh, da, ds)
	b.Queue(`INSERT INTO wallet_postings (account_id, txn_id, owner, amount, created_at)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TIMESTAMPTZ[])`, pAcct, pTxn, pOwner, pAmount, pAt)
	aIDs := make([]string, 0, len(delta))
	for id := range delta {
		aIDs = append(aIDs, id)
	}
	sort.Strings(aIDs)
	m := len(aIDs)
	owners, jurs, curs, akinds := make([]string, m), make([]string, m), make([]string, m), make([]string, m)
	buckets, amounts := make([]int32, m), make([]int64, m)
	for i, id := range aIDs {
		k := acct[id]
		owners[i], jurs[i], curs[i], akinds[i], buckets[i], amounts[i] = k.Owner, k.Jurisdiction, string(k.Currency), string(k.Kind), int32(k.Bucket), delta[id]
	}
	b.Queue(`INSERT INTO wallet_accounts (id, owner, jurisdiction, currency, kind, bucket, balance)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INT[], $7::BIGINT[])
		ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + EXCLUDED.balance`,
		aIDs, owners, jurs, curs, akinds, buckets, amounts)
}

// queueBets queues two statements: the bets and their legs.
func queueBets(b *pgx.Batch, bets []*wallet.Bet) error {
	n := len(bets)
	players, ids, statuses, docs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	placed := make([]time.Time, n)
	dj, dh, ds := make([]*string, n), make([]*string, n), make([]*string, n)
	da := make([]*time.Time, n)
	var lMarket, lBet, lPlayer []string
	var lVersion []int64
	for i, bet := range bets {
		doc, err := json.Marshal(bet)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode bet")
		}
		players[i], ids[i], statuses[i], placed[i], docs[i] = bet.Player, bet.ID, string(bet.Status), bet.PlacedAt, string(doc)
		dj[i], dh[i], da[i], ds[i] = decisionCols(bet.Decision)
		for _, l := range bet.Legs {
			lMarket, lBet, lPlayer, lVersion = append(lMarket, l.MarketID), append(lBet, bet.ID), append(lPlayer, bet.Player), append(lVersion, l.ResultVersion)
		}
	}
	b.Queue(`INSERT INTO wallet_bets (player_id, id, status, placed_at, doc,
			decision_jurisdiction, decision_token_hash, decision_at, decision_source)
		SELECT p, i, s, t, d::JSONB, dj, dh, da, ds
		FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TIMESTAMPTZ[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TIMESTAMPTZ[], $9::TEXT[])
			AS u(p, i, s, t, d, dj, dh, da, ds)`,
		players, ids, statuses, placed, docs, dj, dh, da, ds)
	b.Queue(`INSERT INTO wallet_bet_legs (market_id, bet_id, player_id, result_version)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])`, lMarket, lBet, lPlayer, lVersion)
	return nil
}

// outboxCollector is an audit.Outbox that only collects the records the
// audit capture functions build, so that a group commit can write all of
// them with the group's writes (auditBatch) instead of two statements per
// record.
type outboxCollector struct{ recs []*audit.Record }

func (c *outboxCollector) LastSeq(context.Context, string, audit.Component, string) (uint64, error) {
	return 0, buzzer.Errorf(buzzer.EINTERNAL, "a group commit captures only new transactions and bets")
}

func (c *outboxCollector) Write(_ context.Context, recs ...*audit.Record) error {
	c.recs = append(c.recs, recs...)
	return nil
}

// auditBatch is a group commit's audit capture: the records the capture
// functions build for its transactions and bets, written exactly as
// Outbox.Write writes them one by one: each record takes the next sequence
// of its stream key (the counter rows, upserted in key order, stay locked
// until the transaction ends), and the capture time is read after every
// counter row is held.
type auditBatch struct {
	recs   []*audit.Record
	keys   []string
	counts map[string]int64
	next   map[string]uint64
}

func collectAudit(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet) (*auditBatch, error) {
	c := &outboxCollector{}
	for _, txn := range txns {
		if err := audit.CaptureTransaction(ctx, c, txn); err != nil {
			return nil, err
		}
	}
	for _, b := range bets {
		if err := audit.CaptureBetPlaced(ctx, c, b); err != nil {
			return nil, err
		}
	}
	a := &auditBatch{recs: c.recs, counts: map[string]int64{}, next: map[string]uint64{}}
	for _, r := range a.recs {
		k := r.StreamKey()
		if a.counts[k] == 0 {
			a.keys = append(a.keys, k)
		}
		a.counts[k]++
	}
	sort.Strings(a.keys)
	return a, nil
}

func (a *auditBatch) queueSequences(b *pgx.Batch) {
	if len(a.keys) == 0 {
		return
	}
	counts := make([]int64, len(a.keys))
	for i, k := range a.keys {
		counts[i] = a.counts[k]
	}
	b.Queue(`INSERT INTO audit_sequences (stream_key, seq)
		SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])
		ON CONFLICT (stream_key) DO UPDATE SET seq = audit_sequences.seq + EXCLUDED.seq
		RETURNING stream_key, seq`, a.keys, counts)
}

func (a *auditBatch) readSequences(br pgx.BatchResults) error {
	if len(a.keys) == 0 {
		return nil
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	var k string
	var last int64
	_, err = pgx.ForEachRow(rows, []any{&k, &last}, func() error {
		a.next[k] = uint64(last - a.counts[k] + 1)
		return nil
	})
	return err
}

func (a *auditBatch) insert(ctx context.Context, tx pgx.Tx) error {
	if len(a.recs) == 0 {
		return nil
	}
	now := buzzer.SystemClock{}.Now()
	n := len(a.recs)
	sks, ids, jurs := make([]string, n), make([]string, n), make([]string, n)
	seqs := make([]int64, n)
	data := make([][]byte, n)
	at := make([]time.Time, n)
	for i, r := range a.recs {
		k := r.StreamKey()
		seq := a.next[k]
		if seq == 0 {
			return buzzer.Errorf(buzzer.EINTERNAL, "no audit sequence for %s", k)
		}
		a.next[k] = seq + 1
		d, err := audit.Prepare(r, seq, now)
		if err != nil {
			return err
		}
		sks[i], seqs[i], ids[i], jurs[i], data[i], at[i] = k, int64(seq), r.ID, r.Jurisdiction, d, now
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at)
		SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BYTEA[], $6::TIMESTAMPTZ[])`,
		sks, seqs, ids, jurs, data, at)
	return err
}

// seqPlaceholder is the counter value a capturing group commit's ReadGroup
// inserts for a stream key that has none yet (its first record may be in
// the group): a value no real counter reaches, so it tells a fresh row from
// an existing one. ApplyGroup always replaces it with the real last
// sequence or deletes it, before the transaction can commit.
const seqPlaceholder = int64(1) << 62

// auditHold is what a capturing group commit holds from ReadGroup to
// ApplyGroup: the records of every planned transaction and bet (their
// payloads encoded before the group's first round trip) and the locked
// sequence counters of the transactions' stream keys.
type auditHold struct {
	txRecs, betRecs map[string]*audit.Record // by transaction / bet ID
	held            []string                 // stream keys whose counters are locked, sorted
	base            map[string]uint64        // their last sequences
	fresh           map[string]bool          // those of them that had no counter (placeholder inserted)
}

// ReadGroup implements wallet.GroupTx for the capturing store: it also
// builds the audit records of every planned member and, in the same round
// trip, locks the sequence counters of their ledger streams (the no-op
// upsert of LockBalances: no SIREAD lock), so that ApplyGroup can number
// and insert the records of those that are written with the writes.
func (t auditedWalletTx) ReadGroup(ctx context.Context, g *wallet.GroupRead) error {
	h := &auditHold{txRecs: make(map[string]*audit.Record, len(g.Txns)), betRecs: make(map[string]*audit.Record, len(g.Bets)),
		base: map[string]uint64{}, fresh: map[string]bool{}}
	c := &outboxCollector{}
	seen := map[string]bool{}
	for _, txn := range g.Txns {
		c.recs = c.recs[:0]
		if err := audit.CaptureTransaction(ctx, c, txn); err != nil {
			return err
		}
		if len(c.recs) != 1 {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s captured as %d records", txn.ID, len(c.recs))
		}
		r := c.recs[0]
		h.txRecs[txn.ID] = r
		if k := r.StreamKey(); r.Seq == 0 && !seen[k] {
			seen[k] = true
			h.held = append(h.held, k)
		}
	}
	for _, b := range g.Bets {
		c.recs = c.recs[:0]
		if err := audit.CaptureBetPlaced(ctx, c, b); err != nil {
			return err
		}
		if len(c.recs) != 1 {
			return buzzer.Errorf(buzzer.EINTERNAL, "bet %s captured as %d records", b.ID, len(c.recs))
		}
		h.betRecs[b.ID] = c.recs[0]
	}
	sort.Strings(h.held)
	g.Held = h
	return t.readGroup(ctx, g, &groupExtra{
		queue: func(b *pgx.Batch) bool {
			if len(h.held) == 0 {
				return false
			}
			b.Queue(`INSERT INTO audit_sequences (stream_key, seq) SELECT k, $2 FROM unnest($1::TEXT[]) AS u(k)
				ON CONFLICT (stream_key) DO UPDATE SET seq = audit_sequences.seq
				RETURNING stream_key, seq`, h.held, seqPlaceholder)
			return true
		},
		read: func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var k string
			var seq int64
			if _, err := pgx.ForEachRow(rows, []any{&k, &seq}, func() error {
				if seq == seqPlaceholder {
					h.fresh[k], h.base[k] = true, 0
				} else {
					h.base[k] = uint64(seq)
				}
				return nil
			}); err != nil {
				return err
			}
			if len(h.base) != len(h.held) {
				return buzzer.Errorf(buzzer.EINTERNAL, "locked %d of %d audit sequence counters", len(h.base), len(h.held))
			}
			return nil
		},
	})
}

// ApplyGroup implements wallet.GroupTx for the capturing store: the writes,
// the records of the transactions and bets written (each the next sequence
// of its stream key, as Outbox.Write numbers them) and their counters, in
// one round trip; the placeholder counters of streams that got no record
// are removed in it too.
func (t auditedWalletTx) ApplyGroup(ctx context.Context, g *wallet.GroupRead, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	h, ok := g.Held.(*auditHold)
	if !ok {
		return buzzer.Errorf(buzzer.EINTERNAL, "ApplyGroup without the capturing ReadGroup")
	}
	recs := make([]*audit.Record, 0, len(txns)+len(bets))
	for _, txn := range txns {
		r := h.txRecs[txn.ID]
		if r == nil {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s was not read by ReadGroup", txn.ID)
		}
		recs = append(recs, r)
	}
	for _, b := range bets {
		r := h.betRecs[b.ID]
		if r == nil {
			return buzzer.Errorf(buzzer.EINTERNAL, "bet %s was not read by ReadGroup", b.ID)
		}
		recs = append(recs, r)
	}
	// The capture time is read now that every counter row of a held stream
	// is ours (ReadGroup locked them); the other streams are new (a bet's).
	now := buzzer.SystemClock{}.Now()
	last := map[string]uint64{}
	var newKeys []string
	n := len(recs)
	sks, ids, jurs := make([]string, n), make([]string, n), make([]string, n)
	seqs := make([]int64, n)
	data := make([][]byte, n)
	at := make([]time.Time, n)
	for i, r := range recs {
		k := r.StreamKey()
		seq, seen := last[k]
		if !seen {
			if base, held := h.base[k]; held {
				seq = base
			} else {
				newKeys = append(newKeys, k)
			}
		}
		seq++
		last[k] = seq
		d, err := audit.Prepare(r, seq, now)
		if err != nil {
			return err
		}
		sks[i], seqs[i], ids[i], jurs[i], data[i], at[i] = k, int64(seq), r.ID, r.Jurisdiction, d, now
	}
	var setKeys, dropKeys []string
	var setSeqs, newSeqs []int64
	for _, k := range h.held {
		if s, ok := last[k]; ok {
			setKeys, setSeqs = append(setKeys, k), append(setSeqs, int64(s))
		} else if h.fresh[k] {
			dropKeys = append(dropKeys, k)
		}
	}
	sort.Strings(newKeys)
	for _, k := range newKeys {
		newSeqs = append(newSeqs, int64(last[k]))
	}
	b := &pgx.Batch{}
	if err := queueWrites(b, txns, bets, keys); err != nil {
		return err
	}
	writes := b.Len()
	if len(setKeys) > 0 {
		// The rows exist and are this transaction's (ReadGroup's upsert).
		b.Queue(`INSERT INTO audit_sequences (stream_key, seq) SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])
			ON CONFLICT (stream_key) DO UPDATE SET seq = EXCLUDED.seq`, setKeys, setSeqs)
	}
	if len(newKeys) > 0 {
		// A plain insert: a counter that existed already fails it (a bet's
		// stream starts with its placement).
		b.Queue(`INSERT INTO audit_sequences (stream_key, seq) SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])`, newKeys, newSeqs)
	}
	if len(dropKeys) > 0 {
		b.Queue(`DELETE FROM audit_sequences WHERE stream_key = ANY($1) AND seq = $2`, dropKeys, seqPlaceholder)
	}
	if n > 0 {
		b.Queue(`INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at)
			SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BYTEA[], $6::TIMESTAMPTZ[])`,
			sks, seqs, ids, jurs, data, at)
	}
	if b.Len() == 0 {
		return nil
	}
	// The last statements of the group's transaction: its COMMIT goes with
	// them. Every count checked below is fixed before the batch runs (the
	// inserts' and upserts' by their SQL, the dropped counters' because this
	// transaction inserted and holds those rows), so the checks assert.
	br := sendFinal(ctx, t.tx, b)
	defer br.Close()
	if err := execWrites(br, writes, len(keys)); err != nil {
		return err
	}
	checks := []struct {
		stmt string
		want int
	}{{"set audit counters", len(setKeys)}, {"new audit counters", len(newKeys)}, {"dropped audit counters", len(dropKeys)}, {"audit records", n}}
	for _, c := range checks {
		if c.want == 0 {
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() != int64(c.want) {
			return buzzer.Errorf(buzzer.EINTERNAL, "%s: %d rows, want %d", c.stmt, tag.RowsAffected(), c.want)
		}
	}
	return br.Close()
}

var (
	_ wallet.GroupStore = (*WalletStore)(nil)
	_ wallet.GroupStore = (*AuditedWalletStore)(nil)
)

// InGroupTx implements wallet.GroupStore: InTx whose BEGIN rides in the
// transaction's first round trip.
func (s *WalletStore) InGroupTx(ctx context.Context, fn func(wallet.Tx) error) error {
	return s.db.inLazyTx(ctx, s.iso, func(tx pgx.Tx) error { return fn(walletTx{tx}) })
}

// InGroupTx implements wallet.GroupStore: InTx whose BEGIN rides in the
// transaction's first round trip.
func (s *AuditedWalletStore) InGroupTx(ctx context.Context, fn func(wallet.Tx) error) error {
	return s.db.inLazyTx(ctx, pgx.Serializable, func(tx pgx.Tx) error {
		return fn(auditedWalletTx{walletTx: walletTx{tx}, ob: NewOutbox(tx), jurisdiction: s.jurisdiction})
	})
}

// inLazyTx is inTx (the same retries, retry count and OnTx observation)
// with a lazyTx: the transaction begins with the first statements fn sends
// instead of a round trip of its own.
func (db *DB) inLazyTx(ctx context.Context, iso pgx.TxIsoLevel, fn func(pgx.Tx) error) error {
	return db.retrying(ctx, func() error {
		c, err := db.Pool.Acquire(ctx)
		if err != nil {
			return translateConnErr(err)
		}
		// Release destroys a connection left inside a transaction or busy.
		defer c.Release()
		return finishTx(ctx, &lazyTx{conn: c.Conn(), opts: pgx.TxOptions{IsoLevel: iso}}, fn)
	})
}

// lazyTx is a pgx.Tx on one connection that begins with its first batch
// (pgx's Batch.BeginTx: the BEGIN is the batch's first query) or, if a
// single statement comes first, with a BEGIN of its own; so a transaction
// whose first step is a pipelined batch (a group commit's ReadGroup) saves
// the BEGIN's round trip. Commit and Rollback of a transaction that never
// sent anything do nothing.
type lazyTx struct {
	conn   *pgx.Conn
	opts   pgx.TxOptions
	tx     pgx.Tx // the transaction, once begun
	closed bool
	// ended: the transaction's COMMIT went with its last batch (sendFinal),
	// which has been read to the end.
	ended bool
}

var _ pgx.Tx = (*lazyTx)(nil)

func (t *lazyTx) begun(ctx context.Context) (pgx.Tx, error) {
	if t.tx != nil {
		return t.tx, nil
	}
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	tx, err := t.conn.BeginTx(ctx, t.opts)
	if err != nil {
		return nil, err
	}
	t.tx = tx
	return tx, nil
}

func (t *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b)
	}
	if t.closed {
		return errBatch{pgx.ErrTxClosed}
	}
	nb := &pgx.Batch{}
	nb.BeginTx(t.opts)
	nb.QueuedQueries = append(nb.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, nb)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil { // the BEGIN's result
		_ = br.Close()
		return errBatch{err}
	}
	return br
}

func (t *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

func (t *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

func (t *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.begun(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

func (t *lazyTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

func (t *lazyTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, table, cols, src)
}

func (t *lazyTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

// LargeObjects needs the transaction begun before it is called (any
// statement begins it); before that, its zero value fails.
func (t *lazyTx) LargeObjects() pgx.LargeObjects {
	if t.tx != nil {
		return t.tx.LargeObjects()
	}
	return pgx.LargeObjects{}
}

func (t *lazyTx) Conn() *pgx.Conn { return t.conn }

func (t *lazyTx) Commit(ctx context.Context) error {
	if t.ended {
		return nil
	}
	if t.tx == nil {
		if t.closed {
			return pgx.ErrTxClosed
		}
		t.closed = true
		return nil
	}
	return t.tx.Commit(ctx)
}

func (t *lazyTx) Rollback(ctx context.Context) error {
	if t.ended {
		return pgx.ErrTxClosed
	}
	if t.tx == nil {
		if t.closed {
			return pgx.ErrTxClosed
		}
		t.closed = true
		return nil
	}
	return t.tx.Rollback(ctx)
}

// sendFinal sends b, the last statements of tx, with the transaction's
// COMMIT queued after them, so that the writes and the commit share one
// round trip instead of the commit waiting for the writes' answer and then
// for a round trip of its own (a group commit's lane is idle meanwhile).
// The caller reads b's results as usual, then Close reads the COMMIT's.
// If a statement fails, PostgreSQL skips the rest of the pipeline, COMMIT
// included, and finishTx rolls back as always; a failed COMMIT (a
// serialization failure found at commit) is the error Close returns, as
// finishTx's Commit would have. Once Close succeeded the transaction is
// committed and finishTx's Commit does nothing: a caller must not write
// after it. A transaction that is not a lazyTx gets b alone.
//
// The caller's checks of its results (row counts) run after the commit:
// sendFinal is for statements whose counts their SQL fixes (inserts, and
// upserts without a WHERE), where such a check asserts rather than decides.
func sendFinal(ctx context.Context, tx pgx.Tx, b *pgx.Batch) pgx.BatchResults {
	lt, ok := tx.(*lazyTx)
	if !ok {
		return tx.SendBatch(ctx, b)
	}
	n := b.Len()
	b.Queue("commit")
	return &finalBatch{br: lt.SendBatch(ctx, b), t: lt, left: n}
}

// finalBatch is sendFinal's results: the caller's statements', then the
// COMMIT's, which Close reads.
type finalBatch struct {
	br     pgx.BatchResults
	t      *lazyTx
	left   int // results of the caller's statements not read yet
	closed bool
	err    error
}

func (f *finalBatch) Exec() (pgconn.CommandTag, error) { f.left--; return f.br.Exec() }
func (f *finalBatch) Query() (pgx.Rows, error)         { f.left--; return f.br.Query() }
func (f *finalBatch) QueryRow() pgx.Row                { f.left--; return f.br.QueryRow() }
func (f *finalBatch) Tx() pgx.Tx                       { return f.br.Tx() }

// Close reads what the caller left unread, then the COMMIT's result.
func (f *finalBatch) Close() error {
	if f.closed {
		return f.err
	}
	f.closed = true
	var err error
	for ; f.left > 0 && err == nil; f.left-- {
		_, err = f.br.Exec()
	}
	if err == nil {
		var tag pgconn.CommandTag
		if tag, err = f.br.Exec(); err == nil && tag.String() != "COMMIT" {
			err = pgx.ErrTxCommitRollback
		}
		if err != nil {
			// The commit's own failure: what finishTx makes of one.
			err = translateConnErr(err)
		}
	}
	if cerr := f.br.Close(); err == nil {
		err = cerr
	}
	f.t.ended = err == nil
	f.err = err
	return err
}

// errBatch is the results of a batch that failed as a whole.
type errBatch struct{ err error }

func (e errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, e.err }
func (e errBatch) Query() (pgx.Rows, error)         { return nil, e.err }
func (e errBatch) QueryRow() pgx.Row                { return errRow(e) }
func (e errBatch) Close() error                     { return e.err }
func (e errBatch) Tx() pgx.Tx                       { return nil }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }
