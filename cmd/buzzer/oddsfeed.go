package main

import (
	"time"

	"github.com/buzzer-bet/buzzer"
)

// OddsConfig configures the odds pipeline of a node.
type OddsConfig struct {
	// Simulate runs the simulated providers in-process (dev mode) and
	// connects the adapters to them exactly as to real providers.
	Simulate bool   `yaml:"simulate"`
	Seed     uint64 `yaml:"seed"`
	// Matches per sport the simulator keeps running.
	Football         int           `yaml:"football"`
	AmericanFootball int           `yaml:"american_football"`
	SilenceTimeout   time.Duration `yaml:"silence_timeout"`
	// InPlayBetDelay holds an in-play bet this long before it is re-checked
	// against the then-current price.
	InPlayBetDelay time.Duration `yaml:"in_play_bet_delay"`
	// PublishQueue bounds the hand-off from the engine to the stream.
	PublishQueue int `yaml:"publish_queue"`
	// Stream selects the backbone the deltas travel on and tunes the fan-out.
	Stream OddsStreamConfig `yaml:"stream"`
}

// DefaultOddsConfig is the dev default.
func DefaultOddsConfig() OddsConfig {
	return OddsConfig{Simulate: true, Seed: 1, Football: 30, AmericanFootball: 20, SilenceTimeout: 2 * time.Second, PublishQueue: 65536,
		Stream: DefaultOddsStreamConfig()}
}

// Validate names the bad field.
func (c OddsConfig) Validate() error {
	switch {
	case c.Football < 0 || c.AmericanFootball < 0 || c.Football+c.AmericanFootball > 5000:
		return buzzer.Errorf(buzzer.EINVALID, "odds.football + odds.american_football must be 0..5000")
	case c.SilenceTimeout <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "odds.silence_timeout must be > 0")
	case c.InPlayBetDelay < 0 || c.InPlayBetDelay > time.Minute:
		return buzzer.Errorf(buzzer.EINVALID, "odds.in_play_bet_delay must be 0..1m")
	case c.PublishQueue < 1:
		return buzzer.Errorf(buzzer.EINVALID, "odds.publish_queue must be >= 1")
	}
	return c.Stream.Validate()
}
