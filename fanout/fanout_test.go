package fanout_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	centrifugego "github.com/centrifugal/centrifuge-go"

	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/odds"
)

// wsFollower is a centrifuge-go WebSocket client following one event. A
// reconnect is a new client resuming from the follower's state; callbacks of
// a replaced client are ignored (its state is what the next one resumes).
type wsFollower struct {
	url string
	ev  string

	mu     sync.Mutex
	gen    int
	f      fanout.Follower
	err    error
	client *centrifugego.Client
}

// connect (re)connects, retrying a handshake that times out on a loaded
// machine; it runs on the test's helper goroutines, so it reports instead
// of calling t.Fatal.
func (w *wsFollower) connect() {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = w.try(); err == nil {
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("%s: cannot connect: %w", w.ev, err)
	}
}

func (w *wsFollower) try() error {
	w.mu.Lock()
	old := w.client
	w.gen++ // from here the old client's callbacks change nothing
	gen := w.gen
	data := w.f.ResumeRequest()
	c := centrifugego.NewJsonClient(w.url, centrifugego.Config{HandshakeTimeout: 10 * time.Second, ReadTimeout: 20 * time.Second})
	w.client = c
	done := make(chan struct{})
	w.mu.Unlock()
	if old != nil {
		old.Close() // waits for its callbacks, which take w.mu
	}

	sub, err := c.NewSubscription(fanout.EventChannel(w.ev), centrifugego.SubscriptionConfig{Data: data})
	if err != nil {
		return err
	}
	var once sync.Once
	sub.OnSubscribed(func(e centrifugego.SubscribedEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.gen != gen {
			return
		}
		if err := w.f.Subscribed(e.Data); err != nil && w.err == nil {
			w.err = fmt.Errorf("%s: %w", w.ev, err)
		}
		once.Do(func() { close(done) })
	})
	sub.OnPublication(func(e centrifugego.PublicationEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.gen != gen {
			return
		}
		if err := w.f.Publication(e.Data); err != nil && w.err == nil {
			w.err = fmt.Errorf("%s: %w", w.ev, err)
		}
	})
	sub.OnError(func(e centrifugego.SubscriptionErrorEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.gen == gen && w.err == nil {
			w.err = fmt.Errorf("%s: subscription error: %v", w.ev, e.Error)
		}
	})
	if err := c.Connect(); err != nil {
		return err
	}
	if err := sub.Subscribe(); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: not subscribed", w.ev)
	}
}

// TestWebSocketSubscribersRandomDisconnects: 50 centrifuge-go clients over
// WebSocket follow six events while the engine changes them; each client
// disconnects at random moments and resumes with its last sequence. Every
// client must end with exactly the engine's state, having seen no gap and
// nothing out of order (the Follower refuses both).
func TestWebSocketSubscribersRandomDisconnects(t *testing.T) {
	h := newHarness(t, 6, time.Hour, fanout.Config{})
	ts := httptest.NewServer(h.srv.WebsocketHandler())
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http")

	// Some state exists before anyone subscribes.
	for i := 0; i < 30; i++ {
		h.update(t)
	}
	const clients = 50
	ws := make([]*wsFollower, clients)
	start := time.Now()
	var cwg sync.WaitGroup
	for i := range ws {
		ws[i] = &wsFollower{url: url, ev: h.events[i%len(h.events)]}
		cwg.Add(1)
		go func() { defer cwg.Done(); ws[i].connect() }()
	}
	cwg.Wait()
	t.Logf("connected in %v", time.Since(start))
	defer func() {
		for _, w := range ws {
			w.mu.Lock()
			c := w.client
			w.mu.Unlock()
			c.Close()
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for n := 0; ; n++ {
				select {
				case <-stop:
					if n == 0 {
						w.connect() // every client reconnects at least once
					}
					return
				case <-time.After(time.Duration(rng.IntN(40)) * time.Millisecond):
				}
				if rng.IntN(3) == 0 {
					w.connect()
				}
			}
		}()
	}
	for i := 0; i < 250; i++ {
		h.update(t)
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // let disconnects interleave with deltas
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("updates and reconnects done at %v", time.Since(start))

	resumed := 0
	for _, w := range ws {
		want := h.snapshotJSON(t, w.ev)
		eventually(t, "client reaches the engine's state of "+w.ev, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.err != nil || mustJSON(t, w.f.State) == want
		})
		w.mu.Lock()
		if w.err != nil {
			t.Errorf("client of %s: %v", w.ev, w.err)
		}
		resumed += w.f.Resumed
		w.mu.Unlock()
	}
	t.Logf("converged at %v; %+v", time.Since(start), h.srv.Stats())
	if h.pub.Stats().Dropped != 0 {
		t.Fatalf("publisher dropped deltas: %+v", h.pub.Stats())
	}
	if resumed == 0 {
		t.Fatal("no reconnect resumed from its sequence; every one took a snapshot")
	}
	t.Logf("50 clients, %d resumes", resumed)
}

// TestSlowSubscriberConflatedOthersNot: one subscriber stops reading; the
// fan-out keeps delivering every delta to a fast subscriber of the same
// event, while the slow one is conflated: when it reads again it gets one
// flagged update per market carrying the latest state, never a backlog.
func TestSlowSubscriberConflatedOthersNot(t *testing.T) {
	h := newHarness(t, 1, time.Hour, fanout.Config{Window: 4})
	ev := h.events[0]
	h.update(t)
	fast := dial(t, h.srv, ev, nil)
	slow := dial(t, h.srv, ev, nil)
	slow.hold(true)

	for i := 0; i < 150; i++ {
		h.update(t)
		want := h.snapshotJSON(t, ev)
		// The fast subscriber keeps up while the slow one reads nothing.
		eventually(t, "fast subscriber keeps up", func() bool {
			got, err := fast.state(t)
			return err != nil || got == want
		})
	}
	if _, err := fast.state(t); err != nil {
		t.Fatal(err)
	}
	slow.hold(false)
	want := h.snapshotJSON(t, ev)
	eventually(t, "slow subscriber catches up", func() bool {
		got, err := slow.state(t)
		return err != nil || got == want
	})
	slow.mu.Lock()
	defer slow.mu.Unlock()
	fast.mu.Lock()
	defer fast.mu.Unlock()
	if slow.err != nil {
		t.Fatal(slow.err)
	}
	if slow.f.Conflated == 0 {
		t.Fatal("the slow subscriber was never conflated")
	}
	// 4 markets and the event: a conflated update never holds more.
	if slow.maxCon > 5 {
		t.Fatalf("a conflated update held %d deltas, more than the event has markets", slow.maxCon)
	}
	if fast.f.Conflated != 0 {
		t.Fatalf("the fast subscriber was conflated %d times", fast.f.Conflated)
	}
	if slow.f.Deltas+slow.f.Conflated >= fast.f.Deltas {
		t.Fatalf("slow subscriber got %d publications, fast %d: no conflation happened", slow.f.Deltas+slow.f.Conflated, fast.f.Deltas)
	}
}

// TestResumeTooFarBehindOrNewEpoch: a subscriber whose missed deltas are no
// longer held, or who names another epoch, is told continuity was lost and
// gets a fresh snapshot; one within the history resumes without one.
func TestResumeTooFarBehindOrNewEpoch(t *testing.T) {
	h := newHarness(t, 1, time.Hour, fanout.Config{History: 8})
	ev := h.events[0]
	h.update(t)
	want := h.snapshotJSON(t, ev)
	d := dial(t, h.srv, ev, nil)
	eventually(t, "first state", func() bool { got, err := d.state(t); return err != nil || got == want })
	d.closeF()

	h.update(t) // a few deltas: within the history
	want = h.snapshotJSON(t, ev)
	h.caughtUp(t, ev)
	d = dial(t, h.srv, ev, d)
	eventually(t, "resumed state", func() bool { got, err := d.state(t); return err != nil || got == want })
	d.mu.Lock()
	if d.err != nil || d.f.Resumed != 1 || d.f.ContinuityLost != 0 {
		t.Fatalf("resume within history: err=%v resumed=%d lost=%d", d.err, d.f.Resumed, d.f.ContinuityLost)
	}
	d.mu.Unlock()
	d.closeF()

	for i := 0; i < 40; i++ { // far more deltas than the history holds
		h.update(t)
	}
	want = h.snapshotJSON(t, ev)
	h.caughtUp(t, ev)
	d = dial(t, h.srv, ev, d)
	eventually(t, "state after continuity loss", func() bool { got, err := d.state(t); return err != nil || got == want })
	d.mu.Lock()
	if d.err != nil || d.f.ContinuityLost != 1 {
		t.Fatalf("too far behind: err=%v lost=%d", d.err, d.f.ContinuityLost)
	}
	d.f.Epoch = "another-epoch"
	d.mu.Unlock()
	d.closeF()

	d = dial(t, h.srv, ev, d)
	eventually(t, "state after new epoch", func() bool { got, err := d.state(t); return err != nil || got == want })
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil || d.f.ContinuityLost != 2 || d.f.Epoch != "epoch-1" {
		t.Fatalf("new epoch: err=%v lost=%d epoch=%s", d.err, d.f.ContinuityLost, d.f.Epoch)
	}
}

// TestProviderSilenceReachesSubscribers: the provider stops sending; after
// the silence timeout its markets are suspended and every subscriber gets
// the suspension with its reason.
func TestProviderSilenceReachesSubscribers(t *testing.T) {
	h := newHarness(t, 2, 2*time.Second, fanout.Config{})
	for i := 0; i < 10; i++ {
		h.update(t)
	}
	var subs []*direct
	for _, ev := range h.events {
		subs = append(subs, dial(t, h.srv, ev, nil), dial(t, h.srv, ev, nil))
	}
	h.clock.Advance(3 * time.Second)
	h.eng.CheckHealth()
	for i, d := range subs {
		ev := h.events[i/2]
		want := h.snapshotJSON(t, ev)
		eventually(t, "subscriber sees the suspension", func() bool { got, err := d.state(t); return err != nil || got == want })
		d.mu.Lock()
		if d.err != nil {
			t.Fatal(d.err)
		}
		if len(d.f.State.Markets) == 0 {
			t.Fatalf("%s has no markets", ev)
		}
		for _, m := range d.f.State.Markets {
			if m.Status == odds.Open {
				t.Fatalf("%s: market %s still open after the provider went silent", ev, m.ID)
			}
		}
		if d.reasons["provider_unavailable"] == 0 {
			t.Fatalf("%s: no delta said provider_unavailable (reasons %v)", ev, d.reasons)
		}
		d.mu.Unlock()
	}
}

// TestFanoutBehindSkipsToSnapshots: a fan-out whose consumer is more than
// MaxLag behind the engine (here its clock runs a second ahead, so every
// delta is late) delivers no stale delta: it skips to the bus's end and
// its subscribers get fresh snapshots flagged continuity_lost, in order,
// ending at the engine's state.
func TestFanoutBehindSkipsToSnapshots(t *testing.T) {
	h := newHarness(t, 1, time.Hour, fanout.Config{MaxLag: 500 * time.Millisecond, Clock: &skewed{by: time.Second}})
	ev := h.events[0]
	d := dial(t, h.srv, ev, nil)
	for i := 0; i < 20; i++ {
		h.update(t)
	}
	want := h.snapshotJSON(t, ev)
	eventually(t, "subscriber reaches the engine's state", func() bool { got, err := d.state(t); return err != nil || got == want })
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		t.Fatal(d.err)
	}
	if d.f.Deltas != 0 || d.f.Conflated != 0 {
		t.Fatalf("a lagging fan-out delivered %d deltas and %d conflated updates", d.f.Deltas, d.f.Conflated)
	}
	if d.reasons["lost:"+fanout.ReasonFanoutBehind] == 0 {
		t.Fatalf("no snapshot said %s (reasons %v)", fanout.ReasonFanoutBehind, d.reasons)
	}
	if st := h.srv.Stats(); st.Skips == 0 {
		t.Fatalf("stats: %+v, want skips", st)
	}
}

// TestCoalescingWindow: with a coalescing window every subscriber gets the
// deltas of a window as one update, encoded once per event, in sequence
// (the follower checks it), and ends at the engine's state; a subscriber
// that joins while a window is open gets only what its snapshot lacks.
func TestCoalescingWindow(t *testing.T) {
	h := newHarness(t, 1, time.Hour, fanout.Config{Coalesce: 200 * time.Millisecond})
	ev := h.events[0]
	subs := []*direct{dial(t, h.srv, ev, nil), dial(t, h.srv, ev, nil)}
	for i := 0; i < 40; i++ {
		h.update(t)
		if i == 20 {
			subs = append(subs, dial(t, h.srv, ev, nil))
		}
	}
	want := h.snapshotJSON(t, ev)
	for _, d := range subs {
		eventually(t, "subscriber reaches the engine's state", func() bool { got, err := d.state(t); return err != nil || got == want })
		d.mu.Lock()
		err, n := d.err, d.f.Deltas+d.f.Conflated
		d.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("a subscriber got nothing after its snapshot")
		}
	}
	if st := h.srv.Stats(); st.Coalesced == 0 {
		t.Fatalf("stats %+v: 40 updates within the window were never coalesced", st)
	}
}

// TestUnknownChannelsRefused: subscriptions to events nobody knows, or to
// channels outside the odds namespace, are refused.
func TestUnknownChannelsRefused(t *testing.T) {
	h := newHarness(t, 1, time.Hour, fanout.Config{})
	ts := httptest.NewServer(h.srv.WebsocketHandler())
	defer ts.Close()
	c := centrifugego.NewJsonClient("ws"+strings.TrimPrefix(ts.URL, "http"), centrifugego.Config{})
	defer c.Close()
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{fanout.EventChannel("no-such-event"), "chat:general", fanout.EventChannelPrefix} {
		sub, err := c.NewSubscription(ch)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		sub.OnError(func(e centrifugego.SubscriptionErrorEvent) { errc <- e.Error })
		sub.OnSubscribed(func(centrifugego.SubscribedEvent) { errc <- nil })
		if err := sub.Subscribe(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if err == nil {
				t.Fatalf("subscribed to %q", ch)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no answer for %q", ch)
		}
		_ = c.RemoveSubscription(sub)
	}
}

func TestLobby(t *testing.T) {
	h := newHarness(t, 3, time.Hour, fanout.Config{})
	ts := httptest.NewServer(h.srv.WebsocketHandler())
	defer ts.Close()
	c := centrifugego.NewJsonClient("ws"+strings.TrimPrefix(ts.URL, "http"), centrifugego.Config{})
	defer c.Close()
	var mu sync.Mutex
	var lobby fanout.Lobby
	var lerr error
	sub, err := c.NewSubscription(fanout.LobbyChannel)
	if err != nil {
		t.Fatal(err)
	}
	subscribed := make(chan struct{})
	sub.OnSubscribed(func(e centrifugego.SubscribedEvent) {
		mu.Lock()
		defer mu.Unlock()
		lerr = lobby.Subscribed(e.Data)
		close(subscribed)
	})
	sub.OnPublication(func(e centrifugego.PublicationEvent) {
		mu.Lock()
		defer mu.Unlock()
		if err := lobby.Publication(e.Data); err != nil && lerr == nil {
			lerr = err
		}
	})
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(); err != nil {
		t.Fatal(err)
	}
	<-subscribed
	for i := 0; i < 60; i++ {
		h.update(t)
	}
	for _, ev := range h.events {
		snap, err := h.eng.Snapshot(ev)
		if err != nil {
			t.Fatal(err)
		}
		want := mustJSON(t, snap.Event)
		eventually(t, "lobby shows "+ev, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lerr != nil || mustJSON(t, lobby.Events[ev].EventInfo) == want
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if lerr != nil {
		t.Fatal(lerr)
	}
}

var _ = context.Background
