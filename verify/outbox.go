package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/identify/mailaddr"
)

// The outbox holds verification mail until the smarthost took it. A mail
// over a rate limit or refused with a 4xx waits there and is tried again;
// only a 5xx or running out of attempts gives up, and that is logged.
const (
	maxAttempts = 12
	claimLease  = 2 * time.Minute // a claimed mail whose worker died is retried after this
	outboxTTL   = 7 * 24 * time.Hour
)

// outboxItem is a verification mail to be made and sent: the link is
// created at delivery, so the outbox never holds one.
type outboxItem struct {
	ID       string    `json:"id"`
	Held     Held      `json:"held"`
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
}

func (s *Service) outboxKey() string              { return s.opt.Prefix + "outbox" }
func (s *Service) outboxItemKey(id string) string { return s.opt.Prefix + "outbox:" + id }
func (s *Service) rateKey(scope string, hour int64) string {
	return s.opt.Prefix + "rl:verify:" + scope + ":" + strconv.FormatInt(hour, 10)
}

func (s *Service) enqueue(ctx context.Context, h Held) error {
	var id [9]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("verify: outbox: %w", err)
	}
	it := outboxItem{ID: hex.EncodeToString(id[:]), Held: h, Created: s.now()}
	b, _ := json.Marshal(it)
	if err := s.rdb.Set(ctx, s.outboxItemKey(it.ID), b, outboxTTL).Err(); err != nil {
		return fmt.Errorf("verify: outbox: %w", err)
	}
	if err := s.rdb.ZAdd(ctx, s.outboxKey(), redis.Z{Score: float64(s.now().UnixMilli()), Member: it.ID}).Err(); err != nil {
		return fmt.Errorf("verify: outbox: %w", err)
	}
	return nil
}

// claim takes up to n due mails, pushing each one's due time out by the
// lease so that another worker does not take it meanwhile.
var claim = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
`)

// DeliverDue sends the mails that are due and returns how many it tried.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	if s.sender == nil {
		return 0, nil
	}
	now := s.now()
	cctx, cancel := s.ctx(ctx)
	ids, err := claim.Run(cctx, s.rdb, []string{s.outboxKey()}, now.UnixMilli(), 20, now.Add(claimLease).UnixMilli()).StringSlice()
	cancel()
	if err != nil {
		return 0, fmt.Errorf("verify: outbox: %w", err)
	}
	for _, id := range ids {
		if err := s.deliver(ctx, id); err != nil {
			return len(ids), err
		}
	}
	return len(ids), nil
}

func (s *Service) deliver(ctx context.Context, id string) error {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.rdb.Get(cctx, s.outboxItemKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return s.rdb.ZRem(cctx, s.outboxKey(), id).Err()
	}
	if err != nil {
		return fmt.Errorf("verify: outbox: %w", err)
	}
	var it outboxItem
	if err := json.Unmarshal(b, &it); err != nil {
		s.log.Error().Err(err).Str("id", id).Msg("unreadable outbox item dropped")
		s.mails.Inc("dropped")
		return s.finish(cctx, id)
	}
	to := it.Held.Address
	if wait, err := s.overLimit(cctx, to); err != nil || wait > 0 {
		if err != nil {
			return err
		}
		s.log.Info().Str("to", to).Dur("wait", wait).Msg("verification mail throttled: sent later")
		s.mails.Inc("throttled")
		return s.rdb.ZAdd(cctx, s.outboxKey(), redis.Z{Score: float64(s.now().Add(wait).UnixMilli()), Member: id}).Err()
	}
	link, err := s.newLink(cctx, to)
	if err != nil {
		return err
	}
	msg, err := s.compose(it.Held, link)
	if err != nil {
		s.log.Error().Err(err).Str("to", to).Msg("verification mail cannot be composed: dropped")
		s.mails.Inc("dropped")
		return s.finish(cctx, id)
	}
	err = s.sender.Send(ctx, s.fromAddress(), to, msg)
	if err == nil {
		s.log.Info().Str("to", to).Int("attempt", it.Attempts+1).Msg("verification mail sent")
		s.mails.Inc("sent")
		if err := s.countSent(cctx, to); err != nil {
			s.log.Warn().Err(err).Msg("verification rate counters not updated")
		}
		return s.finish(cctx, id)
	}
	it.Attempts++
	var se *SendError
	temporary := !errors.As(err, &se) || se.Temporary
	if !temporary || it.Attempts >= maxAttempts {
		s.log.Error().Err(err).Str("to", to).Int("attempts", it.Attempts).Msg("verification mail given up")
		s.mails.Inc("failed")
		return s.finish(cctx, id)
	}
	backoff := time.Duration(math.Min(float64(time.Minute)*math.Pow(2, float64(it.Attempts-1)), float64(4*time.Hour)))
	s.log.Warn().Err(err).Str("to", to).Int("attempts", it.Attempts).Dur("retry_in", backoff).Msg("verification mail deferred")
	s.mails.Inc("deferred")
	nb, _ := json.Marshal(it)
	pipe := s.rdb.Pipeline()
	pipe.Set(cctx, s.outboxItemKey(id), nb, outboxTTL)
	pipe.ZAdd(cctx, s.outboxKey(), redis.Z{Score: float64(s.now().Add(backoff).UnixMilli()), Member: id})
	_, err = pipe.Exec(cctx)
	return err
}

func (s *Service) finish(ctx context.Context, id string) error {
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, s.outboxKey(), id)
	pipe.Del(ctx, s.outboxItemKey(id))
	_, err := pipe.Exec(ctx)
	return err
}

// overLimit says how long a mail to addr must wait for the per-domain and
// global hourly limits (the per-address limit is the cooldown).
func (s *Service) overLimit(ctx context.Context, addr string) (time.Duration, error) {
	now := s.now()
	hour := now.Unix() / 3600
	vals, err := s.rdb.MGet(ctx, s.rateKey("domain:"+mailaddr.Domain(addr), hour), s.rateKey("global", hour)).Result()
	if err != nil {
		return 0, fmt.Errorf("verify: rate limits: %w", err)
	}
	count := func(v any) int {
		n, _ := strconv.Atoi(fmt.Sprint(v))
		return n
	}
	if count(vals[0]) < s.cfg.PerDomainPerHour && count(vals[1]) < s.cfg.GlobalPerHour {
		return 0, nil
	}
	return time.Unix((hour+1)*3600, 0).Sub(now), nil
}

func (s *Service) countSent(ctx context.Context, addr string) error {
	hour := s.now().Unix() / 3600
	pipe := s.rdb.Pipeline()
	for _, k := range []string{s.rateKey("domain:"+mailaddr.Domain(addr), hour), s.rateKey("global", hour)} {
		pipe.Incr(ctx, k)
		pipe.Expire(ctx, k, 2*time.Hour)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Run delivers the outbox and sweeps expired holds until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.DeliverDue(ctx); err != nil {
			s.log.Warn().Err(err).Msg("outbox delivery")
		}
		if _, err := s.Sweep(ctx); err != nil {
			s.log.Warn().Err(err).Msg("expiry sweep")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
