// Package ingest is the one place that knows the order of the stages: Handle
// takes one message from any channel (SMTP, IMAP, replay) through parse,
// identify and route, and returns one decision per space. Channels turn the
// decisions into their own answers (SMTP replies, IMAP flags, replay output).
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/identify/mailaddr"
	"mailgw/metrics"
	"mailgw/parse"
	"mailgw/route"
	"mailgw/verify"
)

// Channels a message can arrive on.
const (
	ChannelSMTP   = "smtp"
	ChannelIMAP   = "imap"
	ChannelReplay = "replay"
)

// Envelope is what the channel knows beyond the message bytes.
type Envelope struct {
	Channel string
	// MailFrom is the SMTP reverse path; NullSender marks "<>", which only
	// SMTP can tell apart from "unknown".
	MailFrom   string
	NullSender bool
	// Recipients are the envelope recipients. When empty on the replay
	// channel (replay without --to), the space addresses found in
	// X-Original-To, Delivered-To, To and Cc are used; on other channels
	// no recipient is a no_route decision.
	Recipients []string
	ReceivedAt time.Time
	RemoteAddr string
}

// SpaceDecision is the decision for one space; Space is "" for a recipient
// that routes nowhere.
type SpaceDecision struct {
	Space     string
	Recipient string
	identify.Decision
}

// Result is everything Handle decided about one message.
type Result struct {
	MessageID string // as written, or the synthesized stand-in
	From      string // normalized sender, "" when unusable
	Decisions []SpaceDecision
}

// Handler runs messages through the stages. It is safe for concurrent use.
type Handler struct {
	rdb          redis.UniversalClient
	redisTimeout time.Duration
	router       *route.Router
	dir          *identify.Directory
	store        *route.Store
	settings     *identify.Settings
	parseOpts    parse.Options
	hostname     string
	recorder     route.Recorder
	verifier     Verifier
	batcher      *route.Batcher
	auth         *identify.Authenticator
	limiter      *identify.Limiter
	now          func() time.Time
	dryRun       bool
}

// Options adjust a Handler.
type Options struct {
	// DryRun decides without writing anything: no requests, holds,
	// accounts or log entries.
	DryRun bool
	Now    func() time.Time
	// Verifier is told of every newly held message so it can mail the
	// sender a verification link; nil sends none.
	Verifier Verifier
	// Resolver answers DNS TXT queries for DKIM and DMARC; nil uses the
	// system's. Tests inject one to run offline.
	Resolver identify.Resolver
	// LogWriter, when set, appends decisions to the log stream in the
	// background (serve); without it each is written before Handle returns.
	LogWriter *route.LogWriter
	// Batcher, when set, sends the look-ups and writes of concurrent
	// messages in shared pipelines (serve).
	Batcher *route.Batcher
	// Metrics receives the decision counters; nil counts nothing.
	Metrics *metrics.Registry
}

// Verifier is the verification stage as ingest sees it.
type Verifier interface {
	OnHeld(ctx context.Context, h verify.Held) error
}

// New wires a Handler from the config and a Redis client.
func New(cfg *config.Config, rdb redis.UniversalClient, log zerolog.Logger, opt Options) (*Handler, error) {
	router, err := route.NewRouter(cfg.Spaces)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	settings, err := identify.NewSettings(cfg.Access)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	store := NewStore(cfg, rdb)
	return &Handler{
		rdb:          rdb,
		redisTimeout: cfg.Redis.Timeout.D(),
		router:       router,
		dir:          identify.NewDirectory(rdb, cfg.Redis.Prefix, cfg.Redis.Timeout.D()),
		store:        store,
		settings:     settings,
		parseOpts: parse.Options{
			Limits: parse.Limits{
				MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
				MaxHeaderBytes:  cfg.Limits.MaxHeaderBytes,
				MaxParts:        cfg.Limits.MaxParts,
				MaxDepth:        cfg.Limits.MaxDepth,
			},
			OwnDomain: cfg.Hostname,
		},
		hostname: cfg.Hostname,
		recorder: route.Recorder{Store: store, Log: log, DryRun: opt.DryRun, Writer: opt.LogWriter, Metrics: route.NewMetrics(opt.Metrics)},
		verifier: opt.Verifier,
		batcher:  opt.Batcher,
		auth:     identify.NewAuthenticator(cfg.Access.Authentication, opt.Resolver),
		limiter:  identify.NewLimiter(rdb, cfg.Redis.Prefix, cfg.Rate, cfg.Redis.Timeout.D(), now),
		now:      now,
		dryRun:   opt.DryRun,
	}, nil
}

// NewStore returns the route store configured by cfg.
func NewStore(cfg *config.Config, rdb redis.UniversalClient) *route.Store {
	return route.NewStore(rdb, route.Options{
		Prefix:    cfg.Redis.Prefix,
		Retention: cfg.Redis.Retention.D(),
		// The expiry sweep settles holds; the TTL only catches what it missed.
		HoldTTL:      cfg.Verify.TTL.D() + 24*time.Hour,
		LogMaxLen:    cfg.Redis.LogMaxLen,
		Timeout:      cfg.Redis.Timeout.D(),
		WaitReplicas: cfg.Redis.WaitReplicas,
	})
}

// Router returns the recipient router, which channels use to refuse
// unknown recipients early (SMTP RCPT).
func (h *Handler) Router() *route.Router { return h.router }

// message is one message as the stages see it.
type message struct {
	env     Envelope
	raw     []byte
	msg     *parse.Message
	id      string // Message-ID or stand-in
	from    string // normalized
	problem parse.Problem
	why     string
	facts   identify.Facts // what holds for every space: problem, machine class, verdict
}

// Handle decides one message for every space it is addressed to, carries
// the decisions out and logs each. A Redis failure is a deferred decision
// with nothing half-written; Handle itself never fails.
func (h *Handler) Handle(ctx context.Context, env Envelope, raw []byte) Result {
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = h.now()
	}
	opts := h.parseOpts
	opts.EnvelopeFrom, opts.NullSender = env.MailFrom, env.NullSender
	m := &message{env: env, raw: raw, msg: parse.Parse(raw, opts)}
	m.problem, m.why = m.msg.Problem, m.msg.ProblemWhy
	m.id = m.msg.MessageID
	if m.id == "" {
		m.id = "synthetic-" + m.msg.ContentHash()[:32] + "@" + h.hostname
	}
	if m.problem == parse.ProblemNone && len(m.msg.From) == 1 {
		from, err := mailaddr.Normalize(m.msg.From[0].Address)
		if err != nil {
			m.problem, m.why = parse.ProblemMalformed, "From address unusable: "+err.Error()
		} else {
			m.from = from
		}
	}

	res := Result{MessageID: m.id, From: m.from}
	spaces, unrouted := h.spacesFor(m)
	if len(spaces) > 0 {
		h.authenticate(ctx, m)
	}
	for _, rcpt := range unrouted {
		res.Decisions = append(res.Decisions, h.finish(ctx, m, SpaceDecision{
			Recipient: rcpt,
			Decision:  identify.Decision{Outcome: identify.Rejected, Reason: identify.ReasonNoRoute, Detail: "recipient is no space's address"},
		}))
	}
	for _, sr := range spaces {
		d := h.decide(ctx, m, sr.space)
		res.Decisions = append(res.Decisions, h.finish(ctx, m, SpaceDecision{Space: sr.space.Key, Recipient: sr.rcpt, Decision: d}))
	}
	return res
}

type spaceRcpt struct {
	space config.Space
	rcpt  string
}

// spacesFor returns the spaces a message goes to, each once, in recipient
// order, and the envelope recipients that route nowhere. A replayed message
// without envelope recipients goes where its headers say; header addresses
// of no space are simply not ours. A message that ends up with no space is
// one unrouted recipient "".
func (h *Handler) spacesFor(m *message) ([]spaceRcpt, []string) {
	rcpts := m.env.Recipients
	// Only replay may route by headers: on SMTP and IMAP the envelope (or
	// the mailbox's address) is what the sender's server delivered to, and
	// a header is whatever the sender wrote.
	fromHeaders := len(rcpts) == 0 && m.env.Channel == ChannelReplay
	if fromHeaders {
		rcpts = HeaderRecipients(m.msg)
	}
	var out []spaceRcpt
	var unrouted []string
	seen := map[string]bool{}
	for _, r := range rcpts {
		sp, ok := h.router.Route(r)
		if !ok {
			if !fromHeaders {
				unrouted = append(unrouted, r)
			}
			continue
		}
		if !seen[sp.Key] {
			seen[sp.Key] = true
			out = append(out, spaceRcpt{sp, r})
		}
	}
	if len(out) == 0 && len(unrouted) == 0 {
		unrouted = append(unrouted, "")
	}
	return out, unrouted
}

// HeaderRecipients lists the addresses a replayed message was delivered
// to, most specific first: X-Original-To, Delivered-To, To, Cc.
func HeaderRecipients(msg *parse.Message) []string {
	var out []string
	out = append(out, msg.XOriginalTo...)
	out = append(out, msg.DeliveredTo...)
	for _, a := range msg.To {
		out = append(out, a.Address)
	}
	for _, a := range msg.Cc {
		out = append(out, a.Address)
	}
	return out
}

func deferred(err error) identify.Decision {
	return identify.Decision{Outcome: identify.Deferred, Reason: identify.ReasonBackendUnavailable, Detail: err.Error()}
}

// decide runs the policy for one space and carries out its decision.
// authenticate establishes the verdict for the From domain once per
// message, unless rows 1-3 settle it anyway (they need no verdict, and a
// bounce should cost no DNS lookup).
func (h *Handler) authenticate(ctx context.Context, m *message) {
	m.facts = identify.Facts{
		Problem: m.problem, ProblemWhy: m.why,
		Machine: m.msg.Machine, MachineWhy: m.msg.MachineWhy,
	}
	if _, done := identify.Screen(m.facts, m.from, h.settings); done {
		return
	}
	m.facts.Auth = h.auth.Verdict(ctx, m.msg, m.raw, m.from)
	m.facts.NonCanonicalFrom = !identify.CanonicalFrom(m.msg.From[0].Address)
}

func (h *Handler) decide(ctx context.Context, m *message, space config.Space) identify.Decision {
	facts := m.facts
	if d, done := identify.Screen(facts, m.from, h.settings); done {
		return d
	}
	// What Redis knows of the message and of its sender, and the rate
	// counters, in one round trip. Replay is an operator re-processing
	// stored mail, not a flood, so it is not counted.
	counted := m.env.Channel != ChannelReplay && !h.dryRun
	lctx, cancel := context.WithTimeout(ctx, h.redisTimeout)
	var readSeen func(context.Context) (route.Seen, error)
	var readSender func(context.Context) (identify.Sender, error)
	readThrottle := func() (*identify.Throttle, error) { return nil, nil }
	err := h.pipeline(lctx, func(pipe redis.Pipeliner) {
		readSeen = h.store.QueueLookup(lctx, pipe, space.Key, m.id, threadParents(m.msg), m.msg.Subject, m.from)
		readSender = h.dir.QueueLookup(lctx, pipe, m.from, space.Key, space.ChannelAccess == config.ChannelRestricted)
		if counted {
			readThrottle = h.limiter.QueueCount(lctx, pipe, m.from, space.Key)
		}
	})
	cancel()
	if err != nil {
		return deferred(fmt.Errorf("ingest: look up %s: %w", m.id, err))
	}
	seen, err := readSeen(ctx)
	if err != nil {
		return deferred(err)
	}
	facts.Duplicate, facts.DuplicateOf = seen.Duplicate, seen.DuplicateOf
	facts.ThreadRequest, facts.ThreadParticipant = seen.ThreadRequest, seen.Participant
	if d, done := identify.Admit(facts, h.settings); done {
		// Rows 4 and 5 come before the rate limit: such mail does not count.
		if counted {
			if err := h.limiter.Uncount(ctx, m.from, space.Key); err != nil {
				h.recorder.Log.Warn().Err(err).Msg("rate counter not corrected")
			}
		}
		return d
	}
	sender, err := readSender(ctx)
	if err != nil {
		return deferred(err)
	}
	if facts.Throttle, err = readThrottle(); err != nil {
		return deferred(err)
	}
	d := identify.Decide(facts, sender, identify.Space{Key: space.Key, Restricted: space.ChannelAccess == config.ChannelRestricted}, h.settings)
	if h.dryRun {
		return d
	}
	switch d.Outcome {
	case identify.Queued:
		return h.queue(ctx, m, space, d)
	case identify.Held:
		return h.hold(ctx, m, space, d)
	}
	return d
}

// pipeline runs fill's commands in one round trip: through the batcher,
// with other messages', when there is one. Errors of single commands are
// left to their readers.
func (h *Handler) pipeline(ctx context.Context, fill func(redis.Pipeliner)) error {
	if h.batcher != nil {
		return h.batcher.Do(ctx, fill)
	}
	pipe := h.rdb.Pipeline()
	fill(pipe)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			return err
		}
	}
	return nil
}

// threadParents lists the ids a reply may name, most telling first: the
// direct parent, then References from the newest.
func threadParents(msg *parse.Message) []string {
	out := append([]string(nil), msg.InReplyTo...)
	for i := len(msg.References) - 1; i >= 0; i-- {
		out = append(out, msg.References[i])
	}
	return out
}

func (h *Handler) provision(ctx context.Context, m *message, d identify.Decision, status string) error {
	if !d.NewCustomer {
		return nil
	}
	name := ""
	if len(m.msg.From) == 1 {
		name = m.msg.From[0].Name
	}
	_, err := h.dir.Provision(ctx, identify.Customer{
		Email: m.from, Name: name, Type: d.AccountType, Status: status, Source: m.env.Channel,
	})
	return err
}

func (h *Handler) queue(ctx context.Context, m *message, space config.Space, d identify.Decision) identify.Decision {
	if err := h.provision(ctx, m, d, identify.StatusActive); err != nil {
		return deferred(err)
	}
	req := h.request(m, space, d)
	var w route.Written
	var err error
	if h.batcher != nil {
		w, err = h.store.WriteBatched(ctx, h.batcher, req)
	} else {
		w, err = h.store.Write(ctx, req)
	}
	if err != nil {
		return deferred(err)
	}
	if w.Duplicate {
		// Another copy won the race since Lookup: the script's answer is the truth.
		return identify.Decision{Outcome: identify.Ignored, Reason: identify.ReasonDuplicate, Request: w.ID, Detail: "Message-ID already routed to this space"}
	}
	d.Request = w.ID
	return d
}

func (h *Handler) hold(ctx context.Context, m *message, space config.Space, d identify.Decision) identify.Decision {
	if err := h.provision(ctx, m, d, identify.StatusPending); err != nil {
		return deferred(err)
	}
	req := h.request(m, space, d)
	dup, err := h.store.Hold(ctx, route.Held{
		Request: req, Sender: m.from, HeldAt: h.now().UTC(), Channel: m.env.Channel,
		Subject: m.msg.Subject, Reason: string(d.Reason), Received: m.env.ReceivedAt.UTC().Format(time.RFC3339),
	})
	if err != nil {
		return deferred(err)
	}
	if dup {
		return identify.Decision{Outcome: identify.Ignored, Reason: identify.ReasonDuplicate, Detail: "message already held for this space"}
	}
	if h.verifier != nil {
		name := ""
		if len(m.msg.From) == 1 {
			name = m.msg.From[0].Name
		}
		// The message is held safely either way; a failed mail is tried
		// again with the sender's next message or by "mailgw verify resend".
		if err := h.verifier.OnHeld(ctx, verify.Held{Address: m.from, Name: name, Space: space.Key, Subject: m.msg.Subject}); err != nil {
			d.Detail += "; verification mail not sent: " + err.Error()
		}
	}
	return d
}

// request builds the stream entry of DESIGN §4 for a queued or held message.
func (h *Handler) request(m *message, space config.Space, d identify.Decision) route.Request {
	msg := m.msg
	kind, parent := "request", ""
	if d.Reason == identify.ReasonComment {
		kind, parent = "comment", d.Request
	}
	var participants []string
	for _, list := range [][]parse.Address{msg.To, msg.Cc} {
		for _, a := range list {
			na, err := mailaddr.Normalize(a.Address)
			if err == nil && na != m.from && !h.router.IsSupportAddress(na) {
				participants = append(participants, na)
			}
		}
	}
	fromName := ""
	if len(msg.From) == 1 {
		fromName = msg.From[0].Name
	}
	return route.Request{
		Space: space.Key, Kind: kind, Parent: parent, MessageID: m.id,
		Requester: m.from, Participants: participants, Raw: m.raw,
		Fields: []route.Field{
			{Name: "from", Value: m.from},
			{Name: "from_name", Value: fromName},
			{Name: "account_type", Value: d.AccountType},
			{Name: "new_customer", Value: strconv.FormatBool(d.NewCustomer)},
			{Name: "subject", Value: msg.Subject},
			{Name: "text", Value: msg.Text},
			{Name: "html", Value: msg.HTML},
			{Name: "message_id", Value: m.id},
			{Name: "in_reply_to", Value: strings.Join(msg.InReplyTo, " ")},
			{Name: "references", Value: strings.Join(msg.References, " ")},
			{Name: "cc", Value: addressList(msg.Cc)},
			{Name: "reply_to", Value: addressList(msg.ReplyTo)},
			{Name: "envelope_from", Value: m.env.MailFrom},
			{Name: "attachments", Value: attachmentsJSON(msg.Attachments)},
			{Name: "received_at", Value: m.env.ReceivedAt.UTC().Format(time.RFC3339)},
			{Name: "channel", Value: m.env.Channel},
			{Name: "auth", Value: m.facts.Auth.String()},
		},
	}
}

func addressList(list []parse.Address) string {
	parts := make([]string, 0, len(list))
	for _, a := range list {
		if na, err := mailaddr.Normalize(a.Address); err == nil {
			parts = append(parts, na)
		}
	}
	return strings.Join(parts, ", ")
}

type attachmentJSON struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

func attachmentsJSON(list []parse.Attachment) string {
	out := make([]attachmentJSON, len(list))
	for i, a := range list {
		out[i] = attachmentJSON{a.Name, a.ContentType, a.Size, a.SHA256}
	}
	b, _ := json.Marshal(out) // cannot fail: plain strings and numbers
	return string(b)
}

// finish records a decision.
func (h *Handler) finish(ctx context.Context, m *message, sd SpaceDecision) SpaceDecision {
	h.recorder.Record(ctx, route.Entry{
		Time: h.now(), Channel: m.env.Channel, MessageID: m.id, From: m.from, Space: sd.Space,
		Outcome: string(sd.Outcome), Reason: string(sd.Reason), Request: sd.Request, Detail: sd.Detail,
		Recipient: sd.Recipient, Size: len(m.raw),
	})
	return sd
}

// Record logs a decision a channel made before the message reached Handle
// (a recipient refused at RCPT, data refused as too large), so that the
// decision log answers for every message.
func (h *Handler) Record(ctx context.Context, env Envelope, sd SpaceDecision) {
	from, _ := mailaddr.Normalize(env.MailFrom)
	h.finish(ctx, &message{env: env, msg: &parse.Message{}, from: from}, sd)
}
