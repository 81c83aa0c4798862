package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// IdempotencyHeader carries the client's key on every money-moving POST
// (IETF httpapi Idempotency-Key draft).
const IdempotencyHeader = "Idempotency-Key"

// ReadBody returns the raw JSON body (bounded by the server's body limit), for
// handlers whose domain decodes and fingerprints the exact request.
func ReadBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, buzzer.Errorf(buzzer.EINVALID, "Content-Type must be application/json.")
		}
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, buzzer.Errorf(buzzer.ETOOLARGE, "The request body is larger than %d bytes.", mbe.Limit)
		}
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "The request body could not be read.")
	}
	return b, nil
}

// pageParams reads ?cursor=&limit= with limit in 1..200 (default 50).
func pageParams(r *http.Request) (cursor string, limit int, err error) {
	q := r.URL.Query()
	limit = 50
	if v := q.Get("limit"); v != "" {
		n, convErr := strconv.Atoi(v)
		if convErr != nil || n < 1 || n > 200 {
			return "", 0, buzzer.Errorf(buzzer.EINVALID, "limit must be an integer from 1 to 200.")
		}
		limit = n
	}
	return q.Get("cursor"), limit, nil
}

// writeResponse sends a wallet response: a replay is the stored body byte
// for byte, marked by a header so clients can tell.
func writeResponse(w http.ResponseWriter, resp *wallet.Response) error {
	if resp.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	return WriteRaw(w, resp.Status, "application/json", resp.Body)
}

// walletDecision is the record of the location decision RequireGeo
// admitted r with, stored with the movement or bet it authorizes.
func walletDecision(r *http.Request) (*wallet.Decision, error) {
	d, ok := GeoFrom(r.Context())
	if !ok || !d.Allowed || d.Jurisdiction == "" || d.Source == "" {
		// RequireGeo always sets an allowed decision; anything else is a
		// wiring fault, and money does not move on it.
		return nil, ComplianceUnavailable(nil)
	}
	return &wallet.Decision{Jurisdiction: string(d.Jurisdiction), TokenHash: d.TokenSHA256, DecidedAt: d.DecidedAt, Source: d.Source}, nil
}

// MountWallet adds the money API, the bet API and the operator's settlement
// and ledger-check routes. The player always comes from the verified token:
// no ID in a body or path can reach another player's money.
//
// Deposits, withdrawals and bet placement move money, so they run only with
// an allowed location decision from gate (RequireGeo), and that decision is
// stored with the transaction or bet. Balance, history and bet reads stay
// JWT-only: they change nothing, and a player must be able to see their own
// money from anywhere (the law restricts where a wager is placed, not where
// a statement is read).
func (s *Server) MountWallet(svc *wallet.Service, gate GeoGate) {
	money := func(do func(*http.Request, string, string, wallet.MoneyRequest) (*wallet.Response, error)) HandlerFunc {
		return RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
			p, _ := PlayerFrom(r.Context())
			key := r.Header.Get(IdempotencyHeader)
			body, err := ReadBody(r)
			if err != nil {
				return err
			}
			req, err := wallet.DecodeMoney(body)
			if err != nil {
				return err
			}
			if req.Decision, err = walletDecision(r); err != nil {
				return err
			}
			resp, err := do(r, p.Subject, key, req)
			if err != nil {
				return err
			}
			return writeResponse(w, resp)
		})
	}
	s.Player(wallet.RouteDeposit, Player, money(func(r *http.Request, player, key string, req wallet.MoneyRequest) (*wallet.Response, error) {
		return svc.Deposit(r.Context(), player, key, req)
	}))
	s.Player(wallet.RouteWithdrawal, Player, money(func(r *http.Request, player, key string, req wallet.MoneyRequest) (*wallet.Response, error) {
		return svc.Withdraw(r.Context(), player, key, req)
	}))

	s.Player("GET /v1/wallet", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		accts, err := svc.Balances(r.Context(), p.Subject)
		if err != nil {
			return err
		}
		type balance struct {
			Account  wallet.AccountKind `json:"account"`
			Currency buzzer.Currency    `json:"currency"`
			Balance  buzzer.Amount      `json:"balance"`
		}
		out := make([]balance, 0, len(accts))
		for _, a := range accts {
			out = append(out, balance{Account: a.Kind, Currency: a.Currency, Balance: a.Balance})
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"player_id": p.Subject, "balances": out})
	})

	s.Player("GET /v1/wallet/transactions", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		cursor, limit, err := pageParams(r)
		if err != nil {
			return err
		}
		entries, next, err := svc.Entries(r.Context(), p.Subject, cursor, limit)
		if err != nil {
			return err
		}
		if entries == nil {
			entries = []wallet.Entry{}
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"transactions": entries, "next_cursor": next})
	})

	s.Player(wallet.RoutePlaceBet, Player, RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		key := r.Header.Get(IdempotencyHeader)
		body, err := ReadBody(r)
		if err != nil {
			return err
		}
		req, err := wallet.DecodePlaceBet(body, svc.Config().MaxLegs)
		if err != nil {
			return err
		}
		if req.Decision, err = walletDecision(r); err != nil {
			return err
		}
		resp, err := svc.PlaceBet(r.Context(), p.Subject, key, req)
		if err != nil {
			return err
		}
		return writeResponse(w, resp)
	}))

	s.Player("GET /v1/bets/{id}", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		b, err := svc.Bet(r.Context(), p.Subject, r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, b.View())
	})

	s.Player("GET /v1/bets", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		cursor, limit, err := pageParams(r)
		if err != nil {
			return err
		}
		bets, next, err := svc.Bets(r.Context(), p.Subject, wallet.BetStatus(r.URL.Query().Get("status")), cursor, limit)
		if err != nil {
			return err
		}
		views := make([]wallet.BetView, 0, len(bets))
		for _, b := range bets {
			views = append(views, b.View())
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"bets": views, "next_cursor": next})
	})

	s.Admin("POST /admin/v1/markets/{id}/result", func(w http.ResponseWriter, r *http.Request) error {
		op, _ := PlayerFrom(r.Context())
		body, err := ReadBody(r)
		if err != nil {
			return err
		}
		req, err := wallet.DecodeSettle(body)
		if err != nil {
			return err
		}
		rep, err := svc.SettleMarket(r.Context(), r.PathValue("id"), req, "operator:"+op.Subject)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, rep)
	})

	s.Admin("GET /admin/v1/ledger/check", func(w http.ResponseWriter, r *http.Request) error {
		rep, err := svc.Check(r.Context())
		if err != nil {
			return err
		}
		status := http.StatusOK
		if !rep.OK {
			// A broken invariant is the server's fault; monitoring alerts on 5xx.
			status = http.StatusInternalServerError
		}
		return WriteJSON(w, status, rep)
	})
}
