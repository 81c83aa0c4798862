package wallet

// Queued counts the requests waiting in s's lanes for a group commit.
func Queued(s *Service) int {
	n := 0
	for _, l := range s.lanes {
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
	}
	return n
}
