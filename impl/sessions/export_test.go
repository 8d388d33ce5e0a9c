package sessions

// SetAfterSeen makes Refresh call f after reading the refresh token's
// successor, before its transaction.
func SetAfterSeen(s *Service, f func()) { s.afterSeen = f }
