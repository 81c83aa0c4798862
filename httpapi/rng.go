package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

// RNG is what the RNG routes need; *rng.Service implements it.
type RNG interface {
	Draw(ctx context.Context, req rng.DrawRequest) (rng.Draw, error)
	Checkpoint(ctx context.Context) (rng.SavedCheckpoint, error)
	Proof(ctx context.Context, drawID string) (rng.Proof, error)
	Consistency(ctx context.Context, from, to int64) (rng.ConsistencyProof, error)
	VerifierKey() string
}

// drawBody is the body of POST /v1/rng/draws. The requester is the
// authenticated player, never a field of the body.
type drawBody struct {
	Purpose string   `json:"purpose"`
	Ref     string   `json:"ref"`
	Kind    rng.Kind `json:"kind"`
	N       int64    `json:"n"`
	Count   int      `json:"count"`
}

// proofBody is GET /v1/rng/draws/{id}: rng.Proof (canonical record, signed
// checkpoint, inclusion proof; what a verifier checks) plus the decoded
// record for convenience (a verifier must decode "record" itself).
type proofBody struct {
	rng.Proof
	Draw rng.Record `json:"draw"`
}

// MountRNG registers the RNG routes on the player listener:
//
//	POST /v1/rng/draws            (player)  draw; 201 with the logged draw
//	GET  /v1/rng/draws/{id}       (player)  record + inclusion proof
//	GET  /v1/rng/checkpoint       (public)  latest signed checkpoint, text/plain
//	GET  /v1/rng/consistency?from=N&to=M  (public)  consistency proof
//	GET  /v1/rng/key              (public)  verifier key, text/plain
//
// Draw records are behind authentication: a draw id is unguessable, and
// whoever reveals it (e.g. the table service after a round) decides when its
// values may be seen.
//
// A draw is regulated (it may decide a wager), so POST /v1/rng/draws runs
// only with an allowed location decision from gate (RequireGeo). Reading a
// draw's record and proof is not: it changes nothing, and a verifier, an
// auditor or the player must be able to check a past draw from anywhere.
func (s *Server) MountRNG(svc RNG, gate GeoGate) {
	s.Player("POST /v1/rng/draws", Player, RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
		var b drawBody
		if err := DecodeJSON(r, &b); err != nil {
			return err
		}
		p, _ := PlayerFrom(r.Context())
		d, err := svc.Draw(r.Context(), rng.DrawRequest{
			Purpose: b.Purpose, Ref: b.Ref, Requester: "player:" + p.Subject,
			Kind: b.Kind, N: b.N, Count: b.Count,
		})
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/v1/rng/draws/"+d.ID)
		return WriteJSON(w, http.StatusCreated, d)
	}))
	s.Player("GET /v1/rng/draws/{id}", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, err := svc.Proof(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		rec, err := rng.UnmarshalRecord(p.Data)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "a logged record does not decode")
		}
		return WriteJSON(w, http.StatusOK, proofBody{Proof: p, Draw: rec})
	})
	s.Player("GET /v1/rng/checkpoint", Public, func(w http.ResponseWriter, r *http.Request) error {
		c, err := svc.Checkpoint(r.Context())
		if err != nil {
			return err
		}
		return WriteRaw(w, http.StatusOK, "text/plain; charset=utf-8", c.Note)
	})
	s.Player("GET /v1/rng/consistency", Public, func(w http.ResponseWriter, r *http.Request) error {
		from, err := sizeParam(r, "from")
		if err != nil {
			return err
		}
		to, err := sizeParam(r, "to")
		if err != nil {
			return err
		}
		p, err := svc.Consistency(r.Context(), from, to)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, p)
	})
	s.Player("GET /v1/rng/key", Public, func(w http.ResponseWriter, r *http.Request) error {
		return WriteRaw(w, http.StatusOK, "text/plain; charset=utf-8", []byte(svc.VerifierKey()+"\n"))
	})
}

// sizeParam reads a required non-negative decimal tree size from the query.
func sizeParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if v == "" || err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, buzzer.Errorf(buzzer.EINVALID, "Query parameter %s must be a tree size (a non-negative decimal).", name)
	}
	return n, nil
}

// RNGClient reads (and draws from) a remote RNG over the routes above. It
// implements rng.Source, so rng.Check verifies a remote log with it
// (`buzzer rng verify`), and its Draw drives `buzzer bench rng`. Everything
// it returns is unverified until rng.Check / rng.VerifyDraw says otherwise.
type RNGClient struct {
	base  string
	hc    *http.Client
	token string
}

var _ rng.Source = (*RNGClient)(nil)

// maxRNGResponse bounds a response body the client reads.
const maxRNGResponse = 1 << 20

// NewRNGClient returns a client for the player listener at baseURL (e.g.
// "http://127.0.0.1:8080"). token is a player bearer token, needed only for
// Draw and Proof; hc nil means a client with a 10 s timeout.
func NewRNGClient(baseURL string, hc *http.Client, token string) *RNGClient {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &RNGClient{base: strings.TrimRight(baseURL, "/"), hc: hc, token: token}
}

func (c *RNGClient) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "encoding the request failed")
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "bad RNG server URL")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the RNG server is not reachable")
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRNGResponse+1))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "reading the RNG server's response failed")
	}
	if len(b) > maxRNGResponse {
		return nil, buzzer.Errorf(buzzer.ETOOLARGE, "the RNG server's response is over %d bytes", maxRNGResponse)
	}
	if resp.StatusCode/100 != 2 {
		var p Problem
		if json.Unmarshal(b, &p) == nil && p.Code != "" {
			return nil, &buzzer.Error{Code: p.Code, Reason: p.Reason, Message: p.Detail}
		}
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG server answered %s", resp.Status)
	}
	return b, nil
}

func decodeRNG(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "the RNG server's response is malformed")
	}
	return nil
}

// Checkpoint fetches the latest signed checkpoint (unverified).
func (c *RNGClient) Checkpoint(ctx context.Context) (rng.SavedCheckpoint, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/rng/checkpoint", nil)
	if err != nil {
		return rng.SavedCheckpoint{}, err
	}
	return rng.SavedCheckpoint{Note: b}, nil
}

// Proof fetches a draw's record and inclusion proof (unverified).
func (c *RNGClient) Proof(ctx context.Context, drawID string) (rng.Proof, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/rng/draws/"+url.PathEscape(drawID), nil)
	if err != nil {
		return rng.Proof{}, err
	}
	var p rng.Proof
	return p, decodeRNG(b, &p)
}

// Consistency fetches a consistency proof (unverified).
func (c *RNGClient) Consistency(ctx context.Context, from, to int64) (rng.ConsistencyProof, error) {
	b, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/rng/consistency?from=%d&to=%d", from, to), nil)
	if err != nil {
		return rng.ConsistencyProof{}, err
	}
	var p rng.ConsistencyProof
	return p, decodeRNG(b, &p)
}

// VerifierKey fetches the server's verifier key. It is for convenience only:
// a verifier must trust a key it got out of band, not this one.
func (c *RNGClient) VerifierKey(ctx context.Context) (string, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/rng/key", nil)
	return strings.TrimSpace(string(b)), err
}

// Draw asks for a draw as the token's player.
func (c *RNGClient) Draw(ctx context.Context, req rng.DrawRequest) (rng.Draw, error) {
	b, err := c.do(ctx, http.MethodPost, "/v1/rng/draws", drawBody{Purpose: req.Purpose, Ref: req.Ref, Kind: req.Kind, N: req.N, Count: req.Count})
	if err != nil {
		return rng.Draw{}, err
	}
	var d rng.Draw
	return d, decodeRNG(b, &d)
}
