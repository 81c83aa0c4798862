package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
)

type rngTokens map[string]auth.Principal

func (tt rngTokens) Verify(_ context.Context, tok string) (auth.Principal, error) {
	p, ok := tt[tok]
	if !ok {
		return auth.Principal{}, buzzer.Errorf(buzzer.EUNAUTHORIZED, "bad token")
	}
	return p, nil
}

const rngOrigin = "rng.http.buzzer.example/v1"

var rngAlice = auth.Principal{Subject: "alice", Jurisdiction: "NJ"}

// rngServer mounts the RNG routes over a real rng.Service on an in-memory
// log whose appends can be made to fail, behind a real location gate in
// which alice's session already holds a decision for Trenton, NJ (her
// device's first draw sent its token; the following ones need none).
func rngServer(t testing.TB) (http.Handler, *rngtest.FaultStore) {
	t.Helper()
	geoEnv := newGeoEnv(t, "NJ")
	geoEnv.admit(t, "alice", rngAlice, trenton)
	return rngServerWith(t, geoEnv.gate)
}

func rngServerWith(t testing.TB, gate httpapi.GeoGate) (http.Handler, *rngtest.FaultStore) {
	t.Helper()
	cfg := httpapi.DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := httpapi.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		rngTokens{"alice": rngAlice, "bob": {Subject: "bob", Jurisdiction: "NJ"}}, rngTokens{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := note.GenerateKey(rand.Reader, rngOrigin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	store := &rngtest.FaultStore{Store: rngtest.NewMemStore()}
	svc, err := rng.NewService(context.Background(), store, key, rng.Config{
		Origin: rngOrigin, Jurisdiction: "US-NJ", CheckpointInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv.MountRNG(svc, gate)
	return srv.PlayerHandler(), store
}

func call(t testing.TB, h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func problemCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d with content type %q, want problem+json: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p.Code
}

func TestRNGRoutesDrawAndVerify(t *testing.T) {
	h, _ := rngServer(t)
	rec := call(t, h, "GET", "/v1/rng/key", "", "")
	if rec.Code != 200 {
		t.Fatalf("GET key: %d %s", rec.Code, rec.Body)
	}
	v, err := rng.NewVerifier(rec.Body.String())
	if err != nil {
		t.Fatal(err)
	}

	rec = call(t, h, "GET", "/v1/rng/checkpoint", "", "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET checkpoint: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	trusted, err := rng.OpenCheckpoint(rec.Body.Bytes(), v)
	if err != nil || trusted.Size != 0 {
		t.Fatalf("first checkpoint = %+v, %v", trusted, err)
	}

	var last rng.Draw
	for i, body := range []string{
		`{"purpose":"roulette","ref":"t1","kind":"int","n":37,"count":3}`,
		`{"purpose":"shoe","kind":"shuffle","n":52}`,
		`{"purpose":"seed","kind":"bytes","n":16}`,
	} {
		rec = call(t, h, "POST", "/v1/rng/draws", "alice", body)
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST draw: %d %s", rec.Code, rec.Body)
		}
		var d rng.Draw
		if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		if d.Index != int64(i) || d.Requester != "player:alice" || d.Jurisdiction != "US-NJ" || d.Validate() != nil {
			t.Fatalf("draw %d = %+v", i, d)
		}
		if loc := rec.Header().Get("Location"); loc != "/v1/rng/draws/"+d.ID {
			t.Fatalf("Location = %q", loc)
		}
		last = d
	}
	if !strings.Contains(rec.Body.String(), `"log_index":2`) || !strings.Contains(rec.Body.String(), `"draw_id":"`+last.ID+`"`) {
		t.Fatalf("draw response lacks draw_id/log_index: %s", rec.Body)
	}

	rec = call(t, h, "GET", "/v1/rng/draws/"+last.ID, "alice", "")
	if rec.Code != 200 {
		t.Fatalf("GET draw: %d %s", rec.Code, rec.Body)
	}
	var p rng.Proof
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	got, latest, err := rng.VerifyDraw(p, v)
	if err != nil {
		t.Fatalf("VerifyDraw over HTTP: %v", err)
	}
	if got.ID != last.ID || string(got.Bytes) != string(last.Bytes) || latest.Size != 3 {
		t.Fatalf("verified %+v in size %d, want %+v in 3", got, latest.Size, last)
	}

	rec = call(t, h, "GET", "/v1/rng/consistency?from=0&to=3", "", "")
	if rec.Code != 200 {
		t.Fatalf("GET consistency: %d %s", rec.Code, rec.Body)
	}
	var cp rng.ConsistencyProof
	if err := json.Unmarshal(rec.Body.Bytes(), &cp); err != nil {
		t.Fatal(err)
	}
	if err := rng.VerifyConsistency(trusted, latest, cp.Hashes); err != nil {
		t.Fatal(err)
	}
	rec = call(t, h, "GET", "/v1/rng/consistency?from=1&to=3", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &cp); err != nil || cp.From != 1 || len(cp.Hashes) == 0 {
		t.Fatalf("consistency 1..3 = %+v, %v", cp, err)
	}
}

func TestRNGRoutesRefuseBadRequests(t *testing.T) {
	h, store := rngServer(t)
	for _, tc := range []struct {
		method, path, token, body string
		status                    int
		code                      string
	}{
		{"POST", "/v1/rng/draws", "", `{"purpose":"p","kind":"int","n":6,"count":1}`, 401, buzzer.EUNAUTHORIZED},
		{"POST", "/v1/rng/draws", "alice", `{"purpose":"p","kind":"int","n":6,"count":1,"requester":"x"}`, 400, buzzer.EINVALID},
		{"POST", "/v1/rng/draws", "alice", `{"purpose":"p","kind":"int","n":0,"count":1}`, 400, buzzer.EINVALID},
		{"POST", "/v1/rng/draws", "alice", `{"purpose":"p","kind":"dice","n":6}`, 400, buzzer.EINVALID},
		{"POST", "/v1/rng/draws", "alice", `{"purpose":"p","kind":"int","n":6,"count":100000}`, 400, buzzer.EINVALID},
		{"POST", "/v1/rng/draws", "alice", `[]`, 400, buzzer.EINVALID},
		{"GET", "/v1/rng/draws/5d0e1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", "alice", "", 404, buzzer.ENOTFOUND},
		{"GET", "/v1/rng/draws/not-a-uuid", "alice", "", 400, buzzer.EINVALID},
		{"GET", "/v1/rng/draws/5d0e1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", "", "", 401, buzzer.EUNAUTHORIZED},
		{"GET", "/v1/rng/consistency?from=abc&to=1", "", "", 400, buzzer.EINVALID},
		{"GET", "/v1/rng/consistency?from=01&to=1", "", "", 400, buzzer.EINVALID},
		{"GET", "/v1/rng/consistency?from=0", "", "", 400, buzzer.EINVALID},
		{"GET", "/v1/rng/consistency?from=0&to=5", "", "", 400, buzzer.EINVALID},
	} {
		rec := call(t, h, tc.method, tc.path, tc.token, tc.body)
		if rec.Code != tc.status {
			t.Errorf("%s %s %s: status %d, want %d: %s", tc.method, tc.path, tc.body, rec.Code, tc.status, rec.Body)
			continue
		}
		if code := problemCode(t, rec); code != tc.code {
			t.Errorf("%s %s: code %q, want %q", tc.method, tc.path, code, tc.code)
		}
	}

	// A failed durable append: 503, problem+json, and no values anywhere.
	store.SetAppendError(errors.New("injected"))
	rec := call(t, h, "POST", "/v1/rng/draws", "alice", `{"purpose":"p","kind":"int","n":6,"count":5}`)
	if rec.Code != http.StatusServiceUnavailable || problemCode(t, rec) != buzzer.EUNAVAILABLE {
		t.Fatalf("draw with a failing append: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), `"values"`) || strings.Contains(rec.Body.String(), `"draw_id"`) {
		t.Fatalf("failed draw response reveals a draw: %s", rec.Body)
	}
}

// FuzzRNGDrawBody: the draw body is outside input; any body gets 201 or a
// 4xx problem, never a server error.
func FuzzRNGDrawBody(f *testing.F) {
	h, _ := rngServer(f)
	f.Add(`{"purpose":"p","kind":"int","n":6,"count":1}`)
	f.Add(`{"purpose":"p","kind":"shuffle","n":52}`)
	f.Add(`{"purpose":"p","kind":"bytes","n":4096}`)
	f.Add(`{"purpose":"\u0000","kind":"int","n":-1,"count":1e3}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, body string) {
		rec := call(t, h, "POST", "/v1/rng/draws", "alice", body)
		if rec.Code != http.StatusCreated && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("body %q: status %d: %s", body, rec.Code, rec.Body)
		}
	})
}

// TestRNGClientChecksOverHTTP runs the offline verifier (rng.Check, as
// `buzzer rng verify` does) through RNGClient against the real routes: it
// passes on an honest log and names the index of a record changed in the store.
func TestRNGClientChecksOverHTTP(t *testing.T) {
	h, store := rngServer(t)
	ts := httptest.NewServer(h)
	defer ts.Close()
	ctx := context.Background()
	c := httpapi.NewRNGClient(ts.URL, ts.Client(), "alice")

	vkey, err := c.VerifierKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rng.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	var ds []rng.Draw
	for i := 0; i < 6; i++ {
		d, err := c.Draw(ctx, rng.DrawRequest{Purpose: "client", Kind: rng.KindShuffle, N: 10})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	res, err := rng.Check(ctx, c, v, nil, ds[1].ID)
	if err != nil || res.Draw == nil || len(res.Draw.Values) != 10 {
		t.Fatalf("Check over HTTP = %+v, %v", res, err)
	}
	trusted := res.LatestNote
	d, err := c.Draw(ctx, rng.DrawRequest{Purpose: "client", Kind: rng.KindInt, N: 6, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res, err = rng.Check(ctx, c, v, trusted, d.ID); err != nil || res.Latest.Size != 7 {
		t.Fatalf("Check after growth = size %d, %v", res.Latest.Size, err)
	}

	// Change draw 3 in the store: the verifier names record 3.
	rec := ds[3].Record
	rec.Values[0], rec.Values[1] = rec.Values[1], rec.Values[0]
	data, _ := rec.MarshalBinary()
	store.Store.(*rngtest.MemStore).TamperRecord(3, data)
	_, err = rng.Check(ctx, c, v, res.LatestNote, ds[3].ID)
	var te *rng.TamperError
	if !errors.As(err, &te) || te.Index != 3 {
		t.Fatalf("Check of a changed record over HTTP: %v, want a tamper error naming record 3", err)
	}

	// Errors from the server come back as coded errors.
	if _, err := c.Proof(ctx, "5d0e1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("Proof of an unknown draw: %v, want not_found", err)
	}
	anon := httpapi.NewRNGClient(ts.URL, ts.Client(), "")
	if _, err := anon.Draw(ctx, rng.DrawRequest{Purpose: "p", Kind: rng.KindBytes, N: 1}); buzzer.ErrorCode(err) != buzzer.EUNAUTHORIZED {
		t.Fatalf("Draw without a token: %v, want unauthorized", err)
	}
}

// A draw is regulated: without an allowed location decision it is refused
// before the RNG is touched, and nothing is appended to the log; reading a
// logged draw needs only the player token.
func TestRNGDrawNeedsALocation(t *testing.T) {
	env := newGeoEnv(t, "NJ")
	h, store := rngServerWith(t, env.gate)
	body := `{"purpose":"p","kind":"int","n":6,"count":1}`
	problem := func(rec *httptest.ResponseRecorder) httpapi.Problem {
		t.Helper()
		var p httpapi.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
		}
		return p
	}
	logSize := func() int64 {
		t.Helper()
		n, err := store.TreeSize(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	rec := call(t, h, "POST", "/v1/rng/draws", "alice", body)
	if p := problem(rec); rec.Code != http.StatusForbidden || p.Reason != "geolocation_required" {
		t.Fatalf("draw without a location: %d %s, want 403 geolocation_required", rec.Code, rec.Body)
	}
	// Located across the Delaware in Morrisville, PA: an NJ account on an NJ
	// node is refused.
	req := httptest.NewRequest("POST", "/v1/rng/draws", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set(httpapi.GeoTokenHeader, env.token(t, "alice", rngAlice, morrisville))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if p := problem(rec); rec.Code != http.StatusForbidden || p.Reason != "jurisdiction_mismatch" {
		t.Fatalf("draw located in PA: %d %s, want 403 jurisdiction_mismatch", rec.Code, rec.Body)
	}
	if n := logSize(); n != 0 {
		t.Fatalf("refused draws appended %d records", n)
	}

	// Located in Trenton: the draw is made, and the session's decision
	// serves the next one without a token.
	req = httptest.NewRequest("POST", "/v1/rng/draws", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set(httpapi.GeoTokenHeader, env.token(t, "alice", rngAlice, trenton))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("draw located in NJ: %d %s", rec.Code, rec.Body)
	}
	if rec = call(t, h, "POST", "/v1/rng/draws", "alice", body); rec.Code != http.StatusCreated {
		t.Fatalf("draw on the cached decision: %d %s", rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")
	if n := logSize(); n != 2 {
		t.Fatalf("log holds %d draws, want 2", n)
	}
	// bob has no location decision, yet may read the logged draw.
	if rec := call(t, h, "GET", loc, "bob", ""); rec.Code != http.StatusOK {
		t.Fatalf("reading a draw without a location: %d %s", rec.Code, rec.Body)
	}
}
