package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

var _ table.Store = (*TableStore)(nil)

// TableStoreConfig configures a TableStore.
type TableStoreConfig struct {
	// Prefix starts every key the store writes, e.g. "buzzer:NJ:". Default
	// "buzzer:".
	Prefix string
	// Retain is how many recent events are kept per table; older ones are
	// trimmed and a subscriber that far behind reloads a snapshot. Default
	// 10000, as in the memory store.
	Retain int
	// MaxRetain bounds the events kept per table above a trim floor
	// (SetTrimFloor) that lags: past it the oldest are trimmed anyway and the
	// lagging consumer gets events_trimmed. Default 10 × Retain; never below
	// Retain.
	MaxRetain int
}

// TableStore is table.Store on Redis, so any node can take a table over
// from a node that died. Each table has three keys sharing one hash tag (one
// cluster slot): a lease hash (owner, epoch, expires), a state hash (state,
// version, seq, epoch of the last write, trim floor) and the event log, a
// list of JSON events of which the last Retain are kept — or, once a trim
// floor is set, every event above it, up to MaxRetain.
//
// Every lease change and every state write runs as one Lua script that
// checks the fence — the caller's epoch is the table's current epoch, its
// lease is the live one, the version it read is current, its events continue
// the log — and writes only if all hold, so a node that lost its lease can
// never write, however late its request arrives. Lease expiry is judged by
// the time the caller's injected clock passes into the script (millisecond
// resolution), not by Redis's clock or key TTLs: nodes' clocks must agree to
// well within the lease TTL, as with any lease.
type TableStore struct {
	c         goredis.UniversalClient
	clock     buzzer.Clock
	prefix    string
	retain    int
	maxRetain int
}

// NewTableStore returns a store on c judging lease expiry by clock. The
// caller owns c and closes it.
func NewTableStore(c goredis.UniversalClient, clock buzzer.Clock, cfg TableStoreConfig) *TableStore {
	if cfg.Prefix == "" {
		cfg.Prefix = "buzzer:"
	}
	if cfg.Retain <= 0 {
		cfg.Retain = 10000
	}
	if cfg.MaxRetain <= 0 {
		cfg.MaxRetain = 10 * cfg.Retain
	}
	cfg.MaxRetain = max(cfg.MaxRetain, cfg.Retain)
	return &TableStore{c: c, clock: clock, prefix: cfg.Prefix, retain: cfg.Retain, maxRetain: cfg.MaxRetain}
}

// tableKeys are one table's keys; the braces make them one cluster slot, so
// a script may touch all three.
type tableKeys struct{ lease, state, events string }

func (s *TableStore) keys(id string) (tableKeys, error) {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "{}") {
		return tableKeys{}, buzzer.Errorf(buzzer.EINVALID, "table id must be 1..128 bytes without braces")
	}
	base := s.prefix + "table:{" + id + "}:"
	return tableKeys{lease: base + "lease", state: base + "state", events: base + "events"}, nil
}

// tableFenceLua checks that (owner, epoch) is the table's current, live
// lease at time now; it is shared by every script that writes under a lease.
const tableFenceLua = `
local function fence(key, owner, epoch, now)
  local l = redis.call('HMGET', key, 'owner', 'epoch', 'expires')
  if tonumber(l[2] or '0') ~= epoch then return 'stale_epoch' end
  if (l[1] or '') ~= owner or now >= tonumber(l[3] or '0') then return 'lease_expired' end
  return nil
end
`

// tableAcquire: KEYS lease; ARGV owner, now_ms, ttl_ms. A new epoch whenever
// the lease was free or lapsed; the same epoch for its live owner.
var tableAcquire = goredis.NewScript(`
local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'expires')
local owner = l[1] or ''
local epoch = tonumber(l[2] or '0')
local now = tonumber(ARGV[2])
local live = owner ~= '' and now < tonumber(l[3] or '0')
if live and owner ~= ARGV[1] then return {'lease_held'} end
if not live then epoch = epoch + 1 end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', string.format('%.0f', epoch), 'expires', string.format('%.0f', expires))
return {'ok', epoch, expires}
`)

// tableRenew: KEYS lease; ARGV owner, epoch, now_ms, ttl_ms.
var tableRenew = goredis.NewScript(tableFenceLua + `
local now = tonumber(ARGV[3])
local err = fence(KEYS[1], ARGV[1], tonumber(ARGV[2]), now)
if err then return {err} end
local expires = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'expires', string.format('%.0f', expires))
return {'ok', tonumber(ARGV[2]), expires}
`)

// tableRelease: KEYS lease; ARGV owner, epoch, now_ms. The epoch stays, so
// the next owner's is larger.
var tableRelease = goredis.NewScript(tableFenceLua + `
local err = fence(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if err then return {err} end
redis.call('HSET', KEYS[1], 'owner', '')
return {'ok'}
`)

// tableWrite: KEYS lease, state, events; ARGV owner, epoch, now_ms,
// version, state, first_seq, batch_ok, retain, max_retain, events... The
// events' continuity among themselves and their table are checked by the
// caller (batch_ok); their continuity with the stored log only here. The
// log keeps retain events, or every event above the trim floor up to
// max_retain.
var tableWrite = goredis.NewScript(tableFenceLua + `
local err = fence(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if err then return {err} end
local s = redis.call('HMGET', KEYS[2], 'version', 'seq', 'floor')
local version = tonumber(s[1] or '0')
local seq = tonumber(s[2] or '0')
if version ~= tonumber(ARGV[4]) then return {'version_mismatch', version} end
local n = #ARGV - 9
if n > 0 and (ARGV[7] ~= '1' or tonumber(ARGV[6]) ~= seq + 1) then return {'seq_gap', seq} end
redis.call('HSET', KEYS[2], 'state', ARGV[5], 'version', string.format('%.0f', version + 1),
  'seq', string.format('%.0f', seq + n), 'epoch', ARGV[2])
if n > 0 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 10))
  local keep = tonumber(ARGV[8])
  if s[3] then
    keep = math.min(math.max(seq + n - tonumber(s[3]), keep), tonumber(ARGV[9]))
  end
  redis.call('LTRIM', KEYS[3], -keep, -1)
end
return {'ok', version + 1, seq + n}
`)

// tableSetFloor: KEYS state; ARGV seq. The floor only moves forward.
var tableSetFloor = goredis.NewScript(`
local f = redis.call('HGET', KEYS[1], 'floor')
if not f or tonumber(f) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'floor', ARGV[1])
end
return {'ok'}
`)

// tableEvents: KEYS state, events; ARGV after, limit. The list holds the
// events numbered seq-len+1 .. seq.
var tableEvents = goredis.NewScript(`
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local after = tonumber(ARGV[1])
if after + 1 < first then return {'events_trimmed'} end
if after >= seq then return {'ok', {}} end
local from = after + 1 - first
local to = math.min(len, from + tonumber(ARGV[2])) - 1
return {'ok', redis.call('LRANGE', KEYS[2], from, to)}
`)

// tableRun runs a script and splits its reply into a status and the rest.
func (s *TableStore) tableRun(ctx context.Context, sc *goredis.Script, keys []string, args ...any) (string, []any, error) {
	v, err := sc.Run(ctx, s.c, keys, args...).Slice()
	if err != nil {
		return "", nil, tableUnavailable(ctx, err)
	}
	if len(v) == 0 {
		return "", nil, buzzer.Errorf(buzzer.EINTERNAL, "table store script returned nothing")
	}
	status, ok := v[0].(string)
	if !ok {
		return "", nil, buzzer.Errorf(buzzer.EINTERNAL, "table store script returned a malformed status")
	}
	return status, v[1:], nil
}

// tableUnavailable translates a Redis failure: the outcome of a write that
// fails this way is unknown, and the caller treats it so.
func tableUnavailable(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "the table store did not answer in time")
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the table store is unavailable")
}

// tableRefused turns a script's refusal into the Store contract's error.
func tableRefused(status, id string, l table.Lease) error {
	switch status {
	case table.ReasonLeaseHeld:
		return table.StoreError(status, "table %s is held by another node", id)
	case table.ReasonStaleEpoch:
		return table.StoreError(status, "lease epoch %d is not current for table %s", l.Epoch, id)
	case table.ReasonLeaseExpired:
		return table.StoreError(status, "the lease on table %s has lapsed", id)
	case table.ReasonVersionMismatch:
		return table.StoreError(status, "table %s has moved past the version written from", id)
	case table.ReasonSeqGap:
		return table.StoreError(status, "the events do not continue table %s's log", id)
	case table.ReasonEventsTrimmed:
		return table.StoreError(status, "events are no longer kept that far back for table %s", id)
	default:
		return buzzer.Errorf(buzzer.EINTERNAL, "table store script answered %q", status)
	}
}

func tableInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("not an integer: %T", v)
}

// tableLease decodes an "ok" lease reply {epoch, expires_ms}.
func tableLease(id, owner string, rest []any) (table.Lease, error) {
	if len(rest) != 2 {
		return table.Lease{}, buzzer.Errorf(buzzer.EINTERNAL, "malformed lease reply")
	}
	epoch, err1 := tableInt(rest[0])
	exp, err2 := tableInt(rest[1])
	if err1 != nil || err2 != nil {
		return table.Lease{}, buzzer.Errorf(buzzer.EINTERNAL, "malformed lease reply")
	}
	return table.Lease{Table: id, Owner: owner, Epoch: epoch, Expires: time.UnixMilli(exp).UTC()}, nil
}

func tableMillis(d time.Duration) (int64, error) {
	ms := d.Milliseconds()
	if ms < 1 {
		return 0, buzzer.Errorf(buzzer.EINVALID, "lease TTL must be at least 1ms")
	}
	return ms, nil
}

// Acquire implements table.Store.
func (s *TableStore) Acquire(ctx context.Context, id, owner string, ttl time.Duration) (table.Lease, error) {
	k, err := s.keys(id)
	if err != nil {
		return table.Lease{}, err
	}
	ms, err := tableMillis(ttl)
	if err != nil || owner == "" {
		return table.Lease{}, buzzer.Errorf(buzzer.EINVALID, "acquire needs a table, an owner and a TTL of at least 1ms")
	}
	status, rest, err := s.tableRun(ctx, tableAcquire, []string{k.lease}, owner, s.clock.Now().UnixMilli(), ms)
	if err != nil {
		return table.Lease{}, err
	}
	if status != "ok" {
		return table.Lease{}, tableRefused(status, id, table.Lease{})
	}
	return tableLease(id, owner, rest)
}

// Renew implements table.Store.
func (s *TableStore) Renew(ctx context.Context, l table.Lease, ttl time.Duration) (table.Lease, error) {
	k, err := s.keys(l.Table)
	if err != nil {
		return table.Lease{}, err
	}
	ms, err := tableMillis(ttl)
	if err != nil {
		return table.Lease{}, err
	}
	status, rest, err := s.tableRun(ctx, tableRenew, []string{k.lease}, l.Owner, l.Epoch, s.clock.Now().UnixMilli(), ms)
	if err != nil {
		return table.Lease{}, err
	}
	if status != "ok" {
		return table.Lease{}, tableRefused(status, l.Table, l)
	}
	return tableLease(l.Table, l.Owner, rest)
}

// Release implements table.Store.
func (s *TableStore) Release(ctx context.Context, l table.Lease) error {
	k, err := s.keys(l.Table)
	if err != nil {
		return err
	}
	status, _, err := s.tableRun(ctx, tableRelease, []string{k.lease}, l.Owner, l.Epoch, s.clock.Now().UnixMilli())
	if err != nil {
		return err
	}
	if status != "ok" {
		return tableRefused(status, l.Table, l)
	}
	return nil
}

// Load implements table.Store.
func (s *TableStore) Load(ctx context.Context, id string) (table.Stored, error) {
	k, err := s.keys(id)
	if err != nil {
		return table.Stored{}, err
	}
	v, err := s.c.HMGet(ctx, k.state, "state", "version", "seq", "epoch").Result()
	if err != nil {
		return table.Stored{}, tableUnavailable(ctx, err)
	}
	if len(v) != 4 || v[1] == nil {
		return table.Stored{}, buzzer.Errorf(buzzer.ENOTFOUND, "no table %s", id)
	}
	state, ok := v[0].(string)
	if !ok {
		return table.Stored{}, buzzer.Errorf(buzzer.EINTERNAL, "table %s has no state", id)
	}
	var nums [3]int64
	for i := range nums {
		n, err := tableInt(v[i+1])
		if err != nil {
			return table.Stored{}, buzzer.Wrap(err, buzzer.EINTERNAL, "table %s has a malformed state hash", id)
		}
		nums[i] = n
	}
	return table.Stored{State: []byte(state), Version: nums[0], Seq: nums[1], Epoch: nums[2]}, nil
}

// Write implements table.Store.
func (s *TableStore) Write(ctx context.Context, w table.Write) (int64, error) {
	k, err := s.keys(w.Lease.Table)
	if err != nil {
		return 0, err
	}
	args := make([]any, 0, 9+len(w.Events))
	var first int64
	batchOK := "1"
	if len(w.Events) > 0 {
		first = w.Events[0].Seq
	}
	encoded := make([]any, 0, len(w.Events))
	for i, e := range w.Events {
		if e.Seq != first+int64(i) || e.Table != w.Lease.Table {
			batchOK = "0"
		}
		b, err := json.Marshal(e)
		if err != nil {
			return 0, buzzer.Wrap(err, buzzer.EINTERNAL, "encode table event")
		}
		encoded = append(encoded, b)
	}
	args = append(args, w.Lease.Owner, w.Lease.Epoch, s.clock.Now().UnixMilli(), w.Version, w.State, first, batchOK, s.retain, s.maxRetain)
	args = append(args, encoded...)
	status, rest, err := s.tableRun(ctx, tableWrite, []string{k.lease, k.state, k.events}, args...)
	if err != nil {
		return 0, err
	}
	if status != "ok" {
		return 0, tableRefused(status, w.Lease.Table, w.Lease)
	}
	if len(rest) != 2 {
		return 0, buzzer.Errorf(buzzer.EINTERNAL, "malformed write reply")
	}
	v, err := tableInt(rest[0])
	if err != nil {
		return 0, buzzer.Errorf(buzzer.EINTERNAL, "malformed write reply")
	}
	return v, nil
}

// Head implements audit.TableLog: Load's Seq without reading the state.
func (s *TableStore) Head(ctx context.Context, id string) (int64, error) {
	k, err := s.keys(id)
	if err != nil {
		return 0, err
	}
	v, err := s.c.HMGet(ctx, k.state, "version", "seq").Result()
	if err != nil {
		return 0, tableUnavailable(ctx, err)
	}
	if len(v) != 2 || v[0] == nil {
		return 0, buzzer.Errorf(buzzer.ENOTFOUND, "no table %s", id)
	}
	seq, err := tableInt(v[1])
	if err != nil {
		return 0, buzzer.Wrap(err, buzzer.EINTERNAL, "table %s has a malformed state hash", id)
	}
	return seq, nil
}

// Events implements table.Store.
func (s *TableStore) Events(ctx context.Context, id string, after int64, limit int) ([]table.Event, error) {
	if limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "limit must be positive")
	}
	k, err := s.keys(id)
	if err != nil {
		return nil, err
	}
	status, rest, err := s.tableRun(ctx, tableEvents, []string{k.state, k.events}, after, limit)
	if err != nil {
		return nil, err
	}
	if status != "ok" {
		return nil, tableRefused(status, id, table.Lease{})
	}
	if len(rest) != 1 {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "malformed events reply")
	}
	raw, ok := rest[0].([]any)
	if !ok {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "malformed events reply")
	}
	if len(raw) == 0 {
		return nil, nil
	}
	out := make([]table.Event, len(raw))
	for i, r := range raw {
		str, ok := r.(string)
		if !ok {
			return nil, buzzer.Errorf(buzzer.EINTERNAL, "malformed event in table %s's log", id)
		}
		if err := json.Unmarshal([]byte(str), &out[i]); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "decode event of table %s", id)
		}
	}
	return out, nil
}

// SetTrimFloor implements table.Store.
func (s *TableStore) SetTrimFloor(ctx context.Context, id string, seq int64) error {
	k, err := s.keys(id)
	if err != nil {
		return err
	}
	if seq < 0 {
		return buzzer.Errorf(buzzer.EINVALID, "a trim floor must be >= 0")
	}
	status, _, err := s.tableRun(ctx, tableSetFloor, []string{k.state}, seq)
	if err != nil {
		return err
	}
	if status != "ok" {
		return tableRefused(status, id, table.Lease{})
	}
	return nil
}
