//go:build pkcs11

package pkcs11_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/pkcs11"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	p11 "github.com/miekg/pkcs11"
)

const (
	origin     = "rng.hsm.buzzer.example/v1"
	tokenLabel = "buzzer-test"
	userPIN    = "4321"
	soPIN      = "876543"
)

// softHSM returns the SoftHSM2 module path after creating a fresh token in
// a temporary directory (SOFTHSM2_CONF points there for this test).
func softHSM(t *testing.T) string {
	t.Helper()
	module := os.Getenv("SOFTHSM2_MODULE")
	if module == "" {
		for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"} {
			if _, err := os.Stat(p); err == nil {
				module = p
				break
			}
		}
	}
	if module == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SoftHSM2 is not installed (apt-get install softhsm2), and CI is set")
		}
		t.Skip("SKIPPING: SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)

	// Initialise a token on the free slot and set its user PIN.
	ctx := p11.New(module)
	if ctx == nil {
		t.Fatalf("cannot load %s", module)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(false)
	if err != nil || len(slots) == 0 {
		t.Fatalf("no slots: %v", err)
	}
	if err := ctx.InitToken(slots[0], soPIN, tokenLabel); err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	// SoftHSM2 moves an initialised token to a new slot: find it by label.
	slots, _ = ctx.GetSlotList(true)
	var slot uint
	found := false
	for _, s := range slots {
		if info, err := ctx.GetTokenInfo(s); err == nil && info.Label == tokenLabel {
			slot, found = s, true
		}
	}
	if !found {
		t.Fatal("initialised token not found")
	}
	sh, err := ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Login(sh, p11.CKU_SO, soPIN); err != nil {
		t.Fatal(err)
	}
	if err := ctx.InitPIN(sh, userPIN); err != nil {
		t.Fatal(err)
	}
	ctx.Logout(sh)
	ctx.CloseSession(sh)
	return module
}

func TestSignerInSoftHSM(t *testing.T) {
	module := softHSM(t)
	cfg := pkcs11.Config{Module: module, TokenLabel: tokenLabel, PIN: userPIN, KeyLabel: "rng-checkpoint", Name: origin}

	gen, err := pkcs11.GenerateKey(cfg)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	t.Cleanup(func() { gen.Close() })
	vkey := gen.VerifierKey()
	pub := gen.PublicKey()
	if len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key is %d bytes", len(pub))
	}
	if _, err := pkcs11.GenerateKey(cfg); buzzer.ErrorCode(err) != buzzer.ECONFLICT {
		t.Fatalf("GenerateKey over an existing label: %v, want conflict", err)
	}
	gen.Close()

	// Reopen by label, as a restarted server would.
	s, err := pkcs11.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if s.VerifierKey() != vkey {
		t.Fatalf("reopened key %q differs from generated %q", s.VerifierKey(), vkey)
	}

	// Sign a checkpoint and verify it with the exported public key only.
	v, err := rng.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp := rng.Checkpoint{Origin: origin, Size: 42}
	cp.Hash[0] = 7
	signed, err := rng.SignCheckpoint(cp, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rng.OpenCheckpoint(signed, v)
	if err != nil || got != cp {
		t.Fatalf("OpenCheckpoint = %+v, %v", got, err)
	}

	// The HSM-backed signer drives a whole service: draws verify end to end.
	svc, err := rng.NewService(context.Background(), rngtest.NewMemStore(), s, rng.Config{Origin: origin, Jurisdiction: "US-NJ"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	d, err := svc.Draw(context.Background(), rng.DrawRequest{Purpose: "hsm.test", Requester: "t", Kind: rng.KindShuffle, N: 52})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Proof(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rng.VerifyDraw(p, v); err != nil {
		t.Fatalf("VerifyDraw with the HSM key: %v", err)
	}
}

func TestOpenFailures(t *testing.T) {
	module := softHSM(t)
	base := pkcs11.Config{Module: module, TokenLabel: tokenLabel, PIN: userPIN, KeyLabel: "absent", Name: origin}
	cases := map[string]struct {
		mut  func(*pkcs11.Config)
		code string
	}{
		"no key":        {func(c *pkcs11.Config) {}, buzzer.ENOTFOUND},
		"wrong pin":     {func(c *pkcs11.Config) { c.PIN = "0000" }, buzzer.EFORBIDDEN},
		"no token":      {func(c *pkcs11.Config) { c.TokenLabel = "nope" }, buzzer.ENOTFOUND},
		"missing label": {func(c *pkcs11.Config) { c.KeyLabel = "" }, buzzer.EINVALID},
	}
	for name, tc := range cases {
		cfg := base
		tc.mut(&cfg)
		if _, err := pkcs11.Open(cfg); buzzer.ErrorCode(err) != tc.code {
			t.Errorf("%s: Open = %v, want %s", name, err, tc.code)
		}
	}
}
