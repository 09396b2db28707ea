package verify

import "context"

// ClaimLease is how long a claimed outbox mail waits before another worker
// may take it.
const ClaimLease = claimLease

// ClaimOutbox claims up to n due outbox mails exactly as DeliverDue does,
// and delivers none of them: it is a worker that died right after claiming.
func (s *Service) ClaimOutbox(ctx context.Context, n int) ([]string, error) {
	now := s.now()
	return claim.Run(ctx, s.rdb, []string{s.outboxKey()}, now.UnixMilli(), n, now.Add(claimLease).UnixMilli()).StringSlice()
}
