package wallet_test

import (
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// The decision never comes from the client's body and is not part of the
// idempotency fingerprint.
func TestDecisionNotFromBodyNorFingerprint(t *testing.T) {
	if _, err := wallet.DecodeMoney([]byte(`{"amount":5,"currency":"USD","decision":{"jurisdiction":"NJ"}}`)); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("money body with a decision: %v", err)
	}
	if _, err := wallet.DecodePlaceBet([]byte(`{"stake":5,"currency":"USD","legs":[{"event_id":"e","market_id":"m","selection_id":"s","price":"2"}],"Decision":{}}`), 5); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("bet body with a decision: %v", err)
	}
	req := wallet.MoneyRequest{Amount: 5, Currency: "USD"}
	fp1, _ := wallet.Fingerprint(wallet.RouteDeposit, req)
	req.Decision = &wallet.Decision{Jurisdiction: "NJ", TokenHash: "ab", DecidedAt: time.Unix(1, 0), Source: wallet.DecisionEdge}
	fp2, _ := wallet.Fingerprint(wallet.RouteDeposit, req)
	if fp1 != fp2 {
		t.Fatal("the decision changes the fingerprint")
	}
}
