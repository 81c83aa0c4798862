package rng

// QueueLen reports how many draws wait for the batcher (tests only).
func QueueLen(s *Service) int { return len(s.reqs) }
