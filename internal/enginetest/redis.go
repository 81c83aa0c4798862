package enginetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var rds struct {
	once sync.Once
	url  string
	err  error
}

// Redis returns a client to a real Redis and a key prefix unique to this test;
// every key under the prefix is deleted at cleanup.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rds.once.Do(func() { rds.url, rds.err = setupRedis() })
	if rds.err != nil {
		Unavailable(t, "Redis", rds.err)
	}
	opts, err := redis.ParseURL(rds.url)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		Unavailable(t, "Redis", err)
	}
	prefix := RandomName("buzzer:t:") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c, prefix
}

// RedisURL returns the URL of the test Redis (for tests that start processes).
func RedisURL(t testing.TB) string {
	t.Helper()
	rds.once.Do(func() { rds.url, rds.err = setupRedis() })
	if rds.err != nil {
		Unavailable(t, "Redis", rds.err)
	}
	return rds.url
}

func setupRedis() (string, error) {
	if u := os.Getenv("BUZZER_TEST_REDIS_URL"); u != "" {
		return u, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("BUZZER_TEST_REDIS_URL is not set and no redis-server is installed")
	}
	dir, err := os.MkdirTemp("", "buzzer-redis-")
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--daemonize", "yes",
		"--logfile", filepath.Join(dir, "log"), "--pidfile", filepath.Join(dir, "pid"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("redis-server: %v: %s", err, out)
	}
	reapWhenGone(fmt.Sprintf("kill $(cat %s); rm -rf %s", filepath.Join(dir, "pid"), dir))
	u := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	opts, _ := redis.ParseURL(u)
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return u, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("throwaway redis did not answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
