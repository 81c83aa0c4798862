package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/geo/challengetest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/redis"
)

func TestChallengesConformance(t *testing.T) {
	challengetest.Run(t, func(t *testing.T, maxPerSession int) geo.ChallengeStore {
		client, prefix := enginetest.Redis(t)
		s, err := redis.NewChallenges(client, prefix, maxPerSession)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Two nodes on one Redis: a challenge issued by one is spent at the other,
// once.
func TestChallengesAreSharedBetweenNodes(t *testing.T) {
	client, prefix := enginetest.Redis(t)
	a, _ := redis.NewChallenges(client, prefix, 0)
	b, _ := redis.NewChallenges(client, prefix, 0)
	ctx := context.Background()
	now := time.Now()
	c := geo.Challenge{Value: "shared", PlayerID: "alice", SessionID: "jti:1", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := a.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := b.Consume(ctx, "alice", "jti:1", "shared", now); err != nil {
		t.Fatalf("spent at the other node: %v", err)
	}
	if err := a.Consume(ctx, "alice", "jti:1", "shared", now); !errors.Is(err, geo.ErrChallengeUsed) {
		t.Fatalf("replayed at the issuing node: %v, want used", err)
	}
	// Keys expire by themselves: nothing outlives the challenge by more
	// than MaxChallengeTTL.
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, k := range keys {
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute+geo.MaxChallengeTTL+time.Second {
			t.Errorf("key %s ttl %v (%v)", k, ttl, err)
		}
	}
}

func TestChallengesUnreachableIsUnavailable(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	s, _ := redis.NewChallenges(client, "x:", 0)
	now := time.Now()
	if err := s.Put(context.Background(), geo.Challenge{Value: "v", PlayerID: "p", SessionID: "s", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("put on unreachable Redis: %v, want unavailable", err)
	}
	if err := s.Consume(context.Background(), "p", "s", "v", now); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("consume on unreachable Redis: %v, want unavailable", err)
	}
}

// Two location services (two gateways, or two serve nodes) sharing the
// challenge store: a token answering a challenge issued by one is accepted
// by the other, once; the replay is refused at either.
func TestLocationChecksAcrossNodes(t *testing.T) {
	client, prefix := enginetest.Redis(t)
	prov, err := geo.OpenDevProvider(t.TempDir(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	states, err := geo.USStates()
	if err != nil {
		t.Fatal(err)
	}
	trenton := geo.Point{Lat: 40.2222, Lon: -74.7656}
	ips := geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{
		netip.MustParsePrefix("127.0.0.0/8"): {Point: trenton, Country: "US", Subdivision: "NJ"},
	})
	node := func() *geo.Service {
		store, err := redis.NewChallenges(client, prefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ"}, Issuer: geo.DevIssuer},
			geo.Deps{Boundaries: states, Keys: prov, Registry: geo.NewDevRegistry(), IPs: ips, Challenges: store, Clock: buzzer.SystemClock{}, Rand: rand.Reader})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	a, b := node(), node()
	ctx := context.Background()
	ch, err := a.IssueChallenge(ctx, "alice", "jti:1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := prov.Sign(geo.Claims{
		PlayerID: "alice", SessionID: "jti:1", Challenge: ch.Value, IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(),
		GPS: geo.GPSFix{Lat: trenton.Lat, Lon: trenton.Lon, AccuracyM: 10}, IP: "127.0.0.1",
		CellTowers: []geo.CellTower{{MCC: "310", MNC: "410", LAC: 20815, CID: 1048577}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.Check(ctx, geo.CheckInput{PlayerID: "alice", SessionID: "jti:1", Token: tok})
	if err != nil || !d.Allowed || d.Jurisdiction != "NJ" {
		t.Fatalf("token checked at the other node: %+v %v", d, err)
	}
	if _, err := a.Check(ctx, geo.CheckInput{PlayerID: "alice", SessionID: "jti:1", Token: tok}); buzzer.ErrorReason(err) != "challenge_replayed" {
		t.Fatalf("the same token at the issuing node: %v, want challenge_replayed", err)
	}
}
