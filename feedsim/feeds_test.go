package feedsim

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestControlAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := Start(ctx, FeedsConfig{Sim: Config{Seed: 1, Football: 1, AmericanFootball: 1, Clock: testClock()}, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	put := func(provider, body string) int {
		req, _ := http.NewRequest(http.MethodPut, f.ControlURL()+"/faults/"+provider, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := put("betfair", `{"silent":true,"lag_ms":250,"malformed_every":3,"diverge":1.5}`); c != 200 {
		t.Fatalf("status %d", c)
	}
	if got := f.Betfair.Faults(); got != (Faults{Silent: true, LagMS: 250, MalformedEvery: 3, Diverge: 1.5}) {
		t.Fatalf("faults %+v", got)
	}
	for _, bad := range []string{`{"silent":"yes"}`, `{"lag_ms":-1}`, `{"nope":1}`, `[`} {
		if c := put("uof", bad); c != 400 {
			t.Fatalf("%s: status %d", bad, c)
		}
	}
	if c := put("pinnacle", `{}`); c != 404 {
		t.Fatalf("unknown provider: status %d", c)
	}
	resp, err := http.Get(f.ControlURL() + "/faults")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all map[string]Faults
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil || !all["betfair"].Silent || all["uof"].Silent {
		t.Fatalf("%v %+v", err, all)
	}
}

// TestUOFStreamAndRecovery speaks the UOF provider's wire protocol directly:
// length-prefixed frames, and a recovery answered by odds_change messages
// carrying the request id, then snapshot_complete.
func TestUOFStreamAndRecovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := Start(ctx, FeedsConfig{Sim: Config{Seed: 1, Football: 2, AmericanFootball: 1}, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	resp, err := http.Get(f.UOF.URL() + "/stream?node_id=7")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rec, err := http.Post(f.UOF.URL()+"/v1/liveodds/recovery/initiate_request?request_id=3&node_id=7", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Body.Close()
	if rec.StatusCode != http.StatusAccepted {
		t.Fatalf("recovery status %d", rec.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	frame := func() string {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	snap := 0
	for {
		m := frame()
		if strings.HasPrefix(m, "<alive") {
			continue
		}
		if strings.HasPrefix(m, "<snapshot_complete") {
			if !strings.Contains(m, `request_id="3"`) {
				t.Fatal(m)
			}
			break
		}
		if !strings.HasPrefix(m, "<odds_change") || !strings.Contains(m, `request_id="3"`) {
			t.Fatalf("unexpected frame %s", m)
		}
		snap++
	}
	if snap != 3 {
		t.Fatalf("%d matches in the snapshot", snap)
	}
	// A live step arrives as odds_change without request_id.
	f.Sim.Step(10 * time.Second)
	for {
		m := frame()
		if strings.HasPrefix(m, "<odds_change") {
			if strings.Contains(m, "request_id") {
				t.Fatal(m)
			}
			break
		}
	}
}
