// Package georegistry holds the HTTP clients for the compliance
// dependencies that operators run outside Buzzer: the self-exclusion and
// consent registry (Client, a geo.Registry) and the geolocation provider's
// JWKS endpoint (JWKS, a geo.KeySource). It owns their wire formats and
// HTTP behaviour only; every decision stays in package geo. It must never
// turn a failed or malformed answer into a permissive one: anything but a
// well-formed, matching 200 is an error, which geo turns into a
// fail-closed denial.
package georegistry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer/geo"
)

var _ geo.Registry = (*Client)(nil)

// maxBody bounds every response read.
const maxBody = 64 << 10

// Config configures a registry Client.
type Config struct {
	// BaseURL of the registry, e.g. https://registry.example/api. Required;
	// http is accepted only for loopback hosts.
	BaseURL string
	// BearerToken, when set, is sent as Authorization: Bearer.
	BearerToken string
	// HTTPClient defaults to a client with Timeout (below).
	HTTPClient *http.Client
	// Timeout bounds each request when HTTPClient is nil. Default 2s; the
	// geo service's RegistryTimeout bounds each call as well.
	Timeout time.Duration
}

// Client asks the operator's registry about a player:
//
//	GET {BaseURL}/v1/players/{player_id}/status?jurisdiction={code}
//	200 {"player_id":"…","jurisdiction":"NJ","self_excluded":false,"consented":true}
//
// Every field is required and the first two must echo the request.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := parseServiceURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("georegistry: %w", err)
	}
	return &Client{base: u, token: cfg.BearerToken, hc: httpClient(cfg.HTTPClient, cfg.Timeout)}, nil
}

func httpClient(hc *http.Client, timeout time.Duration) *http.Client {
	if hc != nil {
		return hc
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &http.Client{Timeout: timeout}
}

func parseServiceURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not absolute", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if h != "localhost" && !strings.HasPrefix(h, "127.") && h != "::1" {
			return nil, fmt.Errorf("URL %q: plain http is accepted only for loopback", raw)
		}
	default:
		return nil, fmt.Errorf("URL %q: scheme must be https", raw)
	}
	return u, nil
}

// PlayerStatus implements geo.Registry.
func (c *Client) PlayerStatus(ctx context.Context, playerID string, j geo.Jurisdiction) (geo.PlayerStatus, error) {
	u := c.base.JoinPath("v1", "players", playerID, "status")
	u.RawQuery = url.Values{"jurisdiction": {string(j)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return geo.PlayerStatus{}, fmt.Errorf("georegistry: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	body, err := do(c.hc, req)
	if err != nil {
		return geo.PlayerStatus{}, fmt.Errorf("georegistry: %w", err)
	}
	st, err := ParseStatus(body, playerID, j)
	if err != nil {
		return geo.PlayerStatus{}, fmt.Errorf("georegistry: %w", err)
	}
	return st, nil
}

// do sends req and returns the body of a 200 response, read up to maxBody.
func do(hc *http.Client, req *http.Request) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: status %d", req.Method, req.URL.Redacted(), resp.StatusCode)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%s %s: response over %d bytes", req.Method, req.URL.Redacted(), maxBody)
	}
	return body, nil
}

// ParseStatus decodes a registry status response strictly: unknown fields,
// missing fields, trailing data, or a player or jurisdiction that does not
// echo the request are errors.
func ParseStatus(body []byte, playerID string, j geo.Jurisdiction) (geo.PlayerStatus, error) {
	var r struct {
		PlayerID     *string `json:"player_id"`
		Jurisdiction *string `json:"jurisdiction"`
		SelfExcluded *bool   `json:"self_excluded"`
		Consented    *bool   `json:"consented"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return geo.PlayerStatus{}, fmt.Errorf("decode status: %w", err)
	}
	if dec.More() {
		return geo.PlayerStatus{}, errors.New("trailing data after status")
	}
	switch {
	case r.PlayerID == nil || r.Jurisdiction == nil || r.SelfExcluded == nil || r.Consented == nil:
		return geo.PlayerStatus{}, errors.New("status lacks a required field")
	case *r.PlayerID != playerID || *r.Jurisdiction != string(j):
		return geo.PlayerStatus{}, errors.New("status is for another player or jurisdiction")
	}
	return geo.PlayerStatus{SelfExcluded: *r.SelfExcluded, Consented: *r.Consented}, nil
}
