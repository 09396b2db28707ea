// Package verify provisions unknown senders (DESIGN §6): it mails a
// verification link when a message is held for an address, confirms the
// address when the link's page is posted, and then queues everything held
// for it, once. Held requests of senders who never confirm are dropped at
// expiry and logged. Tokens are 32 random bytes (base64url); only their
// SHA-256 is stored.
package verify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/identify/mailaddr"
	"mailgw/metrics"
	"mailgw/route"
)

// Errors Inspect and Confirm return for links that cannot be used.
var (
	ErrUnknownToken = errors.New("verify: unknown link")
	ErrExpired      = errors.New("verify: link expired")
)

// ReasonExpired is logged for held requests dropped because their sender
// never confirmed the address.
const ReasonExpired = "verification_expired"

// tokenGrace keeps an expired token's record so its link can still say
// "expired" rather than "unknown".
const tokenGrace = 7 * 24 * time.Hour

// Service is the verification stage.
type Service struct {
	rdb      redis.UniversalClient
	store    *route.Store
	dir      *identify.Directory
	settings *identify.Settings
	router   *route.Router
	recorder route.Recorder
	sender   Sender
	mailing  bool // outbound.smarthost is set; without it links are logged
	cfg      config.Verify
	opt      Options
	spaces   map[string]string // key -> name
	log      zerolog.Logger
	now      func() time.Time
	mails    *metrics.CounterVec // verification mails by result
	confirms *metrics.CounterVec
}

// Options are what the service needs beyond the verify config section.
type Options struct {
	Prefix    string
	Timeout   time.Duration
	PublicURL string // http.public_url
	From      string // outbound.from, "Name <address>"
	Hostname  string
	// Sender delivers the outbox; nil leaves delivery to another process
	// (replay queues mail that "mailgw serve" sends).
	Sender Sender
	Now    func() time.Time
	// Metrics receives the verification counters; nil counts nothing.
	Metrics *metrics.Registry
}

// New wires the service.
func New(cfg *config.Config, rdb redis.UniversalClient, store *route.Store, log zerolog.Logger, opt Options) (*Service, error) {
	settings, err := identify.NewSettings(cfg.Access)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	router, err := route.NewRouter(cfg.Spaces)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	s := &Service{
		rdb: rdb, store: store, settings: settings, router: router,
		dir:      identify.NewDirectory(rdb, opt.Prefix, opt.Timeout),
		recorder: route.Recorder{Store: store, Log: log, Metrics: route.NewMetrics(opt.Metrics)},
		sender:   opt.Sender, mailing: cfg.Outbound.Smarthost != "", cfg: cfg.Verify, opt: opt,
		spaces: map[string]string{}, log: log.With().Str("component", "verify").Logger(), now: opt.Now,
		mails: opt.Metrics.CounterVec("mailgw_verification_mails_total",
			"Verification mails by result: sent, deferred (retried later), throttled (rate limit, sent later), failed (given up), dropped (could not be composed), not_sent (address must not be mailed).",
			"result"),
		confirms: opt.Metrics.CounterVec("mailgw_verification_confirmations_total",
			"Pending accounts activated through their verification link. Under signup: open accounts start active, so their links are not counted."),
	}
	for _, sp := range cfg.Spaces {
		s.spaces[sp.Key] = sp.Name
	}
	return s, nil
}

func (s *Service) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.opt.Timeout)
}

func (s *Service) tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return s.opt.Prefix + "token:" + hex.EncodeToString(sum[:])
}
func (s *Service) cooldownKey(addr string) string { return s.opt.Prefix + "verify:cooldown:" + addr }
func (s *Service) expiryKey() string              { return s.opt.Prefix + "holds" }

// tokenRecord is what a token's key holds.
type tokenRecord struct {
	Address string    `json:"address"`
	Expires time.Time `json:"expires"`
	Used    bool      `json:"used,omitempty"`
}

// Held is what ingest knows of a message it just held.
type Held struct {
	Address string // normalized sender
	Name    string // display name
	Space   string // space key
	Subject string
}

// mailable says whether verification mail may go to addr: never to
// mail systems' own mailboxes, to the gateway itself or to blocked domains,
// which is how a verification mail can never start a loop.
func (s *Service) mailable(addr string) (bool, string) {
	local := addr[:strings.LastIndexByte(addr, '@')]
	switch local {
	case "mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply", "donotreply", "bounce", "bounces":
		return false, "address is a mail system's or no-reply mailbox"
	}
	if s.router.IsSupportAddress(addr) || addr == s.fromAddress() {
		return false, "address is the gateway's own"
	}
	if s.settings.Blocked(addr) {
		return false, "address is blocked"
	}
	return true, ""
}

func (s *Service) fromAddress() string {
	a, err := mail.ParseAddress(s.opt.From)
	if err != nil {
		return ""
	}
	n, _ := mailaddr.Normalize(a.Address)
	return n
}

// OnHeld sends the sender a verification link unless one went out within
// the cooldown. The cooldown is claimed first, so concurrent messages from
// one sender produce one mail, and given back if the mail cannot be queued.
func (s *Service) OnHeld(ctx context.Context, h Held) error {
	if ok, why := s.mailable(h.Address); !ok {
		s.log.Info().Str("address", h.Address).Str("why", why).Msg("verification mail not sent")
		s.mails.Inc("not_sent")
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	claimed, err := s.rdb.SetNX(ctx, s.cooldownKey(h.Address), "1", s.cfg.Cooldown.D()).Result()
	if err != nil {
		return fmt.Errorf("verify: cooldown of %s: %w", h.Address, err)
	}
	if !claimed {
		return nil
	}
	// The expiry sweep must find this sender even if no mail goes out.
	expires := float64(s.now().Add(s.cfg.TTL.D()).Unix())
	err = s.rdb.ZAddNX(ctx, s.expiryKey(), redis.Z{Score: expires, Member: h.Address}).Err()
	if err == nil {
		err = s.request(ctx, h)
	}
	if err != nil {
		s.rdb.Del(ctx, s.cooldownKey(h.Address))
		return fmt.Errorf("verify: %s: %w", h.Address, err)
	}
	return nil
}

// Resend mails a fresh link to a pending address now, ignoring the cooldown.
func (s *Service) Resend(ctx context.Context, addr string) error {
	c, err := s.dir.Customer(ctx, addr)
	if err != nil {
		return err
	}
	if c.Status != identify.StatusPending {
		return fmt.Errorf("verify: %s is %s, not pending", addr, c.Status)
	}
	if ok, why := s.mailable(addr); !ok {
		return fmt.Errorf("verify: %s: %s", addr, why)
	}
	h := Held{Address: addr, Name: c.Name}
	if held, err := s.store.Holds(ctx, addr); err == nil && len(held) > 0 {
		h.Space, h.Subject = held[0].Space, held[0].Subject
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.request(ctx, h)
}

// request queues a verification mail. The token is made when the mail is
// delivered, so no link ever rests in Redis in clear; without a smarthost
// (a demo, a first try on a laptop) the link is made now and logged.
func (s *Service) request(ctx context.Context, h Held) error {
	if s.mailing {
		return s.enqueue(ctx, h)
	}
	link, err := s.newLink(ctx, h.Address)
	if err != nil {
		return err
	}
	s.log.Warn().Str("address", h.Address).Str("link", link).Msg("no outbound.smarthost: verification link not mailed, logged instead")
	return nil
}

// newLink creates a token for addr, valid for verify.ttl, and returns its
// link; the sender's holds expire with the newest token.
func (s *Service) newLink(ctx context.Context, addr string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("verify: token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	expires := s.now().Add(s.cfg.TTL.D())
	rec, _ := json.Marshal(tokenRecord{Address: addr, Expires: expires})
	if err := s.rdb.Set(ctx, s.tokenKey(token), rec, s.cfg.TTL.D()+tokenGrace).Err(); err != nil {
		return "", fmt.Errorf("verify: store token: %w", err)
	}
	if err := s.rdb.ZAdd(ctx, s.expiryKey(), redis.Z{Score: float64(expires.Unix()), Member: addr}).Err(); err != nil {
		return "", fmt.Errorf("verify: note expiry: %w", err)
	}
	return s.opt.PublicURL + "/verify/" + token, nil
}

// Pending is what a verification page shows.
type Pending struct {
	Address string
	Spaces  []string // names of the spaces with held requests
	Held    int
	Used    bool // already confirmed
}

// Inspect reads a token without changing anything: mail scanners open links.
func (s *Service) Inspect(ctx context.Context, token string) (Pending, error) {
	rec, err := s.record(ctx, token)
	if err != nil {
		return Pending{}, err
	}
	p := Pending{Address: rec.Address, Used: rec.Used}
	held, err := s.store.Holds(ctx, rec.Address)
	if err != nil {
		return p, err
	}
	p.Held = len(held)
	seen := map[string]bool{}
	for _, h := range held {
		if !seen[h.Space] {
			seen[h.Space] = true
			p.Spaces = append(p.Spaces, s.spaceName(h.Space))
		}
	}
	return p, nil
}

func (s *Service) spaceName(key string) string {
	if n := s.spaces[key]; n != "" {
		return n
	}
	return key
}

func (s *Service) record(ctx context.Context, token string) (tokenRecord, error) {
	var rec tokenRecord
	if len(token) != 43 {
		return rec, ErrUnknownToken
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.rdb.Get(ctx, s.tokenKey(token)).Bytes()
	if errors.Is(err, redis.Nil) {
		return rec, ErrUnknownToken
	}
	if err != nil {
		return rec, fmt.Errorf("verify: read token: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("verify: read token: %w", err)
	}
	if !rec.Used && !s.now().Before(rec.Expires) {
		return rec, ErrExpired
	}
	return rec, nil
}

// Confirm activates the address of token and queues what was held for it.
// It is safe to repeat and to run concurrently: each held request is
// written by the dedupe script and removed only by whoever finds it first,
// so every request is queued exactly once. A used link confirms nothing
// new and reports Used.
func (s *Service) Confirm(ctx context.Context, token string) (Pending, []string, error) {
	rec, err := s.record(ctx, token)
	if err != nil {
		return Pending{}, nil, err
	}
	p := Pending{Address: rec.Address, Used: rec.Used}
	status, err := s.dir.Activate(ctx, rec.Address)
	switch {
	case errors.Is(err, identify.ErrNotFound):
		// The account was removed at expiry: the link is dead.
		return p, nil, ErrExpired
	case err != nil:
		return p, nil, err
	case status == identify.StatusDisabled:
		// An operator disabled the account: a link must not undo that.
		return p, nil, ErrExpired
	case status == identify.StatusPending:
		// Activate changes the status atomically, so concurrent clicks on
		// one link count once.
		s.confirms.Inc()
	}
	ids, spaces, err := s.release(ctx, rec.Address, "confirmed by the sender")
	if err != nil {
		return p, ids, err
	}
	p.Spaces = spaces
	if !rec.Used {
		rec.Used = true
		b, _ := json.Marshal(rec)
		cctx, cancel := s.ctx(ctx)
		defer cancel()
		if err := s.rdb.Set(cctx, s.tokenKey(token), b, redis.KeepTTL).Err(); err != nil {
			return p, ids, fmt.Errorf("verify: mark token used: %w", err)
		}
	}
	return p, ids, nil
}

// maxRelease bounds one release; holds beyond it wait for the sweep.
const maxRelease = 1000

// release queues every request held for addr, oldest first.
func (s *Service) release(ctx context.Context, addr, why string) (ids, spaces []string, err error) {
	seen := map[string]bool{}
	for range maxRelease {
		h, item, ok, err := s.store.OldestHold(ctx, addr)
		if err != nil || !ok {
			return ids, spaces, err
		}
		req := h.Request
		req.Release = true
		for i := range req.Fields {
			if req.Fields[i].Name == "new_customer" {
				req.Fields[i].Value = "true"
			}
		}
		w, err := s.store.Write(ctx, req)
		if err != nil {
			return ids, spaces, err
		}
		e := route.Entry{Time: s.now(), Channel: h.Channel, MessageID: h.MessageID, From: addr, Space: h.Space,
			Outcome: string(identify.Queued), Reason: string(identify.ReasonAcceptedNewCustomer), Request: w.ID, Detail: why}
		if w.Duplicate {
			e.Outcome, e.Reason, e.Detail = string(identify.Ignored), string(identify.ReasonDuplicate), "already queued"
		} else {
			ids = append(ids, w.ID)
		}
		s.recorder.Record(ctx, e)
		if err := s.store.PopHold(ctx, addr, item); err != nil {
			return ids, spaces, err
		}
		if !seen[h.Space] {
			seen[h.Space] = true
			spaces = append(spaces, s.spaceName(h.Space))
		}
	}
	return ids, spaces, nil
}

// Sweep settles addresses whose verification time is over: a sender who
// confirmed meanwhile gets anything still held queued (a message held
// while the confirmation ran); one who did not has every held request
// dropped with a verification_expired entry, and the pending account
// removed so that a later mail starts over.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	cctx, cancel := s.ctx(ctx)
	due, err := s.rdb.ZRangeByScore(cctx, s.expiryKey(), &redis.ZRangeBy{
		Min: "-inf", Max: fmt.Sprint(s.now().Unix()), Count: 100,
	}).Result()
	cancel()
	if err != nil {
		return 0, fmt.Errorf("verify: sweep: %w", err)
	}
	for _, addr := range due {
		if err := s.settle(ctx, addr); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

func (s *Service) settle(ctx context.Context, addr string) error {
	c, err := s.dir.Customer(ctx, addr)
	switch {
	case err != nil && !errors.Is(err, identify.ErrNotFound):
		return err
	case err == nil && c.Status == identify.StatusActive:
		if _, _, err := s.release(ctx, addr, "released by the expiry sweep"); err != nil {
			return err
		}
	default:
		// Never confirmed (pending, disabled meanwhile, or removed): what
		// is held is dropped and logged; only a pending account goes, so
		// that the next mail starts over.
		if err := s.drop(ctx, addr); err != nil {
			return err
		}
		if c.Status == identify.StatusPending {
			if err := s.dir.RemoveCustomer(ctx, addr); err != nil && !errors.Is(err, identify.ErrNotFound) {
				return err
			}
		}
	}
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.rdb.ZRem(cctx, s.expiryKey(), addr).Err(); err != nil {
		return fmt.Errorf("verify: sweep: %w", err)
	}
	return nil
}

func (s *Service) drop(ctx context.Context, addr string) error {
	for range maxRelease {
		h, item, ok, err := s.store.OldestHold(ctx, addr)
		if err != nil || !ok {
			return err
		}
		s.recorder.Record(ctx, route.Entry{Time: s.now(), Channel: h.Channel, MessageID: h.MessageID, From: addr, Space: h.Space,
			Outcome: string(identify.Ignored), Reason: ReasonExpired, Detail: "sender did not confirm the address in time"})
		if err := s.store.PopHold(ctx, addr, item); err != nil {
			return err
		}
	}
	return nil
}
