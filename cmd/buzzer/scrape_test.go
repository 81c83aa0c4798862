package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestScrapeValueSumsLabelSets: the audit backlog is labelled by outbox
// (and by jurisdiction on a node that holds several); a bench reads the
// node's total. Names that merely start with the metric's are not counted.
func TestScrapeValueSumsLabelSets(t *testing.T) {
	page := `# HELP buzzer_audit_capture_backlog_records rows still in the outbox
# TYPE buzzer_audit_capture_backlog_records gauge
buzzer_audit_capture_backlog_records{outbox="store"} 12
buzzer_audit_capture_backlog_records{jurisdiction="PA",outbox="tables"} 30
buzzer_audit_capture_backlog_records_age 1000
buzzer_odds_bus_published_total 7
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(page)) }))
	defer srv.Close()
	ctx := context.Background()
	if v, ok := scrapeValue(ctx, srv.URL, "buzzer_audit_capture_backlog_records"); !ok || v != 42 {
		t.Fatalf("backlog %v, %v; want 42", v, ok)
	}
	if v, ok := scrapeCounter(ctx, srv.URL, "buzzer_odds_bus_published_total"); !ok || v != 7 {
		t.Fatalf("unlabelled counter %v, %v; want 7", v, ok)
	}
	if _, ok := scrapeValue(ctx, srv.URL, "buzzer_nothing"); ok {
		t.Fatal("a missing metric was found")
	}
}
