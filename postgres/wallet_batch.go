package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/wallet"
)

// The group-commit half of the wallet store: each method is one round trip
// whatever the batch's size (multi-row statements over unnest()ed arrays,
// pipelined in one pgx.Batch where a method has several).

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
	players, keys, fps, states, owners := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	locked, created, expires := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	statuses, effects := make([]int32, n), make([]string, n)
	bodies := make([][]byte, n)
	for i, k := range recs {
		players[i], keys[i], fps[i], states[i], owners[i] = k.Player, k.Key, k.Fingerprint, string(k.State), k.Owner
		locked[i], created[i], expires[i] = k.LockedUntil, k.CreatedAt, k.ExpiresAt
		statuses[i], effects[i], bodies[i] = int32(k.Status), k.EffectID, k.Body
	}
	// ON CONFLICT's arbiter check reads with a dirty snapshot and takes no
	// SIREAD lock, so claiming fresh keys adds nothing to SSI's read set; a
	// key committed meanwhile by another transaction fails the claim with
	// 40001 and the batch is retried. Only the keys that were there already
	// are read back, in a second statement.
	rows, err := t.tx.Query(ctx, `INSERT INTO wallet_idempotency_keys (player_id, key, `+keyColumns+`)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[], $7::INT[], $8::BYTEA[], $9::TEXT[], $10::TIMESTAMPTZ[], $11::TIMESTAMPTZ[])
		ON CONFLICT (player_id, key) DO NOTHING
		RETURNING player_id, key`,
		players, keys, fps, states, owners, locked, statuses, bodies, effects, created, expires)
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
		k := &wallet.KeyRecord{}
		var state string
		var status int32
		if err := rows.Scan(&k.Player, &k.Key, &k.Fingerprint, &state, &k.Owner, &k.LockedUntil, &status, &k.Body, &k.EffectID, &k.CreatedAt, &k.ExpiresAt); err != nil {
			return nil, err
		}
		k.State, k.Status = wallet.KeyState(state), int(status)
		k.LockedUntil, k.CreatedAt, k.ExpiresAt = utc(k.LockedUntil), utc(k.CreatedAt), utc(k.ExpiresAt)
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

func (t walletTx) MarketResults(ctx context.Context, markets []string) (map[string]*wallet.MarketResult, error) {
	ms := slices.Compact(slices.Sorted(slices.Values(markets)))
	rows, err := t.tx.Query(ctx, `SELECT market_id, result_version, fingerprint, outcomes, settled_by, done, updated_at
		FROM wallet_market_results WHERE market_id = ANY($1)`, ms)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*wallet.MarketResult{}
	for rows.Next() {
		r := &wallet.MarketResult{}
		var outcomes []byte
		if err := rows.Scan(&r.MarketID, &r.ResultVersion, &r.Fingerprint, &outcomes, &r.SettledBy, &r.Done, &r.UpdatedAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(outcomes, &r.Outcomes); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored market result is corrupt")
		}
		r.UpdatedAt = utc(r.UpdatedAt)
		out[r.MarketID] = r
	}
	return out, rows.Err()
}

func (t walletTx) LockBalances(ctx context.Context, keys []wallet.AccountKey) (map[string]buzzer.Amount, error) {
	byID := map[string]wallet.AccountKey{}
	for _, k := range keys {
		byID[k.ID()] = k
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	n := len(ids)
	owners, jurs, curs, kinds, buckets := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]int32, n)
	for i, id := range ids {
		k := byID[id]
		owners[i], jurs[i], curs[i], kinds[i], buckets[i] = k.Owner, k.Jurisdiction, string(k.Currency), string(k.Kind), int32(k.Bucket)
	}
	// A no-op upsert, not SELECT ... FOR UPDATE: it locks the rows (in ID
	// order, the order of its input) and returns their latest balances
	// without adding them to SSI's read set, where a batch's hundreds of
	// row locks would be promoted to a relation lock that conflicts with
	// every concurrent writer. A row changed since the snapshot fails with
	// 40001, as any SERIALIZABLE write does.
	rows, err := t.tx.Query(ctx, `INSERT INTO wallet_accounts (id, owner, jurisdiction, currency, kind, bucket, balance)
		SELECT i, o, j, c, k, b, 0 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INT[]) AS u(i, o, j, c, k, b)
		ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance
		RETURNING id, balance`, ids, owners, jurs, curs, kinds, buckets)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]buzzer.Amount, len(ids))
	for rows.Next() {
		var id string
		var bal int64
		if err := rows.Scan(&id, &bal); err != nil {
			return nil, err
		}
		out[id] = buzzer.Amount(bal)
	}
	return out, rows.Err()
}

func (t walletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	return t.applyBatch(ctx, txns, bets, keys, false)
}

// applyBatch is ApplyBatch; with capture it also writes the audit records
// of the transactions and bets, as the audited store's one-at-a-time
// methods do: their sequence counters are taken in the same round trip as
// the writes, and the records are inserted in one more.
func (t walletTx) applyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord, capture bool) error {
	var cap *auditBatch
	if capture {
		var err error
		if cap, err = collectAudit(ctx, txns, bets); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	if len(txns) > 0 {
		queueTransactions(b, txns)
	}
	if len(bets) > 0 {
		if err := queueBets(b, bets); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		n := len(keys)
		players, ks, fps, states, owners := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		locked, created, expires := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		statuses, effects := make([]int32, n), make([]string, n)
		bodies := make([][]byte, n)
		for i, k := range keys {
			players[i], ks[i], fps[i], states[i], owners[i] = k.Player, k.Key, k.Fingerprint, string(k.State), k.Owner
			locked[i], created[i], expires[i] = k.LockedUntil, k.CreatedAt, k.ExpiresAt
			statuses[i], effects[i], bodies[i] = int32(k.Status), k.EffectID, k.Body
		}
		// An upsert rather than UPDATE ... FROM: an UPDATE's scan adds the
		// key index to SSI's read set (promoted to a relation lock for a
		// batch's many rows), and every other lane's new keys would then
		// conflict with it. The rows exist: this transaction claimed them.
		b.Queue(`INSERT INTO wallet_idempotency_keys (player_id, key, `+keyColumns+`)
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[], $7::INT[], $8::BYTEA[], $9::TEXT[], $10::TIMESTAMPTZ[], $11::TIMESTAMPTZ[])
			ON CONFLICT (player_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, owner = EXCLUDED.owner,
				locked_until = EXCLUDED.locked_until, status = EXCLUDED.status, body = EXCLUDED.body, effect_id = EXCLUDED.effect_id,
				created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
			players, ks, fps, states, owners, locked, statuses, bodies, effects, created, expires)
	}
	writes := b.Len()
	if cap != nil {
		cap.queueSequences(b)
	}
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	for i := 0; i < writes; i++ {
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if i == writes-1 && len(keys) > 0 && tag.RowsAffected() != int64(len(keys)) {
			return buzzer.Errorf(buzzer.EINTERNAL, "updated %d of %d idempotency keys", tag.RowsAffected(), len(keys))
		}
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
	defer rows.Close()
	for rows.Next() {
		var k string
		var last int64
		if err := rows.Scan(&k, &last); err != nil {
			return err
		}
		a.next[k] = uint64(last - a.counts[k] + 1)
	}
	return rows.Err()
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
