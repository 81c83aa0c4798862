package nats

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/toggle"
)

// TogglesBucket is the JetStream key-value bucket of the runtime toggles.
// Its history keeps the last flips of every toggle as their record.
const TogglesBucket = "TOGGLES"

// toggleHistory is how many flips per toggle the bucket keeps.
const toggleHistory = 64

// ToggleStore keeps toggle states in a JetStream key-value bucket: one key
// per toggle, every node watching the bucket, so a flip reaches all nodes
// in the order of its revision.
type ToggleStore struct {
	kv jetstream.KeyValue
}

var _ toggle.Store = (*ToggleStore)(nil)

// NewToggleStore creates (or opens) the bucket with replicas copies (1 for
// the embedded server).
func NewToggleStore(ctx context.Context, c *Conn, replicas int) (*ToggleStore, error) {
	if replicas < 1 {
		replicas = 1
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: TogglesBucket, Description: "buzzer runtime toggles", History: toggleHistory,
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open the toggles bucket")
	}
	return &ToggleStore{kv: kv}, nil
}

// Put implements toggle.Store.
func (s *ToggleStore) Put(ctx context.Context, st toggle.State) (toggle.State, error) {
	st.Revision = 0
	b, err := json.Marshal(st)
	if err != nil {
		return toggle.State{}, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the toggle")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := s.kv.Put(ctx, string(st.Name), b)
	if err != nil {
		return toggle.State{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the toggle store did not take the flip; nothing changed")
	}
	st.Revision = rev
	return st, nil
}

// Watch implements toggle.Store.
func (s *ToggleStore) Watch(ctx context.Context, f func(toggle.State), ready func()) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot watch the toggles bucket")
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return buzzer.Errorf(buzzer.EUNAVAILABLE, "the toggles watch ended")
			}
			if e == nil { // every present key delivered
				ready()
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			st, err := decodeToggle(e)
			if err != nil {
				continue // a record this release cannot read never flips anything
			}
			f(st)
		}
	}
}

// History returns the stored flips of one toggle, oldest first.
func (s *ToggleStore) History(ctx context.Context, n toggle.Name) ([]toggle.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	es, err := s.kv.History(ctx, string(n))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the toggle's history")
	}
	out := make([]toggle.State, 0, len(es))
	for _, e := range es {
		if st, err := decodeToggle(e); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}

func decodeToggle(e jetstream.KeyValueEntry) (toggle.State, error) {
	var st toggle.State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, err
	}
	if string(st.Name) != e.Key() {
		return st, errors.New("toggle record names another key")
	}
	st.Revision = e.Revision()
	return st, nil
}
