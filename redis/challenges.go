package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

var _ geo.ChallengeStore = (*Challenges)(nil)

// putChallengeScript records a challenge for a session, atomically with the
// session's limit. KEYS[1] is the challenge (a hash: p player, s session,
// e expiry ms, u used), KEYS[2] the session's unspent challenges (a sorted
// set scored by expiry). ARGV: player, session, expiry ms, now ms, limit,
// keep-until ms, value. Returns 0 stored, 1 over the session's limit, 2 a
// value collision.
var putChallengeScript = goredis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return 1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 2
end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 's', ARGV[2], 'e', ARGV[3], 'u', '0')
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 0
`)

// consumeChallengeScript spends a challenge once. KEYS as above; ARGV:
// player, session, now ms, value. Returns 0 spent now, 1 unknown (never
// issued, issued to another session, or long gone), 2 already spent,
// 3 expired.
var consumeChallengeScript = goredis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'p', 's', 'e', 'u')
if not v[1] or v[1] ~= ARGV[1] or v[2] ~= ARGV[2] then
  return 1
end
if tonumber(ARGV[3]) >= tonumber(v[3]) then
  return 3
end
if v[4] == '1' then
  return 2
end
redis.call('HSET', KEYS[1], 'u', '1')
redis.call('ZREM', KEYS[2], ARGV[4])
return 0
`)

// Challenges keeps geolocation challenges in Redis, so the gateway or serve
// node that checks a token need not be the one that issued its challenge:
// every node sharing the Redis and the prefix sees every challenge, and a
// challenge is spent exactly once among all of them. Time comes from the
// caller's clock, as in the rate limiter.
//
// A spent or expired challenge is kept until MaxChallengeTTL past its
// expiry, so a replay is reported as one (challenge_replayed or
// challenge_expired) rather than as unknown. Both keys of a session share a
// hash tag, so the scripts work on Redis Cluster too.
type Challenges struct {
	client        goredis.Scripter
	prefix        string
	maxPerSession int
}

// NewChallenges returns the store over client with keys under prefix (e.g.
// "buzzer:geo:"), holding at most maxPerSession unspent challenges per
// player session (default 16 when zero).
func NewChallenges(client goredis.Scripter, prefix string, maxPerSession int) (*Challenges, error) {
	if client == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "challenges: a Redis client is required")
	}
	if maxPerSession < 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "challenges: the per-session limit must be >= 0")
	}
	if maxPerSession == 0 {
		maxPerSession = 16
	}
	return &Challenges{client: client, prefix: prefix, maxPerSession: maxPerSession}, nil
}

// keys returns a challenge's key and its session's set.
func (c *Challenges) keys(playerID, sessionID, value string) []string {
	sum := sha256.Sum256([]byte(playerID + "\x00" + sessionID))
	tag := c.prefix + "{" + hex.EncodeToString(sum[:12]) + "}:"
	return []string{tag + "c:" + value, tag + "s"}
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Put implements geo.ChallengeStore.
func (c *Challenges) Put(ctx context.Context, ch geo.Challenge) error {
	keep := ch.ExpiresAt.Add(geo.MaxChallengeTTL)
	res, err := putChallengeScript.Run(ctx, c.client, c.keys(ch.PlayerID, ch.SessionID, ch.Value),
		ch.PlayerID, ch.SessionID, ms(ch.ExpiresAt), ms(ch.IssuedAt), c.maxPerSession, ms(keep), ch.Value).Int()
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "challenge store: %v", err)
	}
	switch res {
	case 0:
		return nil
	case 1:
		return buzzer.Errorf(buzzer.ETOOMANY, "Too many outstanding location challenges for this session; use one or wait for them to expire.").WithReason("challenge_limit")
	default:
		return buzzer.Errorf(buzzer.EINTERNAL, "Challenge value collision.")
	}
}

// Consume implements geo.ChallengeStore.
func (c *Challenges) Consume(ctx context.Context, playerID, sessionID, value string, now time.Time) error {
	res, err := consumeChallengeScript.Run(ctx, c.client, c.keys(playerID, sessionID, value),
		playerID, sessionID, ms(now), value).Int()
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "challenge store: %v", err)
	}
	switch res {
	case 0:
		return nil
	case 2:
		return geo.ErrChallengeUsed
	case 3:
		return geo.ErrChallengeExpired
	default:
		return geo.ErrChallengeUnknown
	}
}
