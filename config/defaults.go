package config

import (
	"net"
	"os"
	"strings"
	"time"
)

// Defaults (DESIGN §9).
const (
	DefaultRedisPrefix     = "mailgw:"
	DefaultSMTPListen      = "127.0.0.1:2525"
	DefaultHTTPListen      = "127.0.0.1:8080"
	DefaultMaxMessageBytes = 25 << 20 // JSM's limit
	DefaultMaxRecipients   = 100
	DefaultMaxLineLength   = 2000
	DefaultMaxHeaderBytes  = 1 << 20
	DefaultMaxParts        = 1000
	DefaultMaxDepth        = 20
	DefaultLogMaxLen       = 100000
	DefaultIMAPMailbox     = "INBOX"
	DefaultIMAPBatchSize   = 50
	DefaultIMAPWorkers     = 8
	DefaultIMAPMaxFailures = 3
	// MaxIMAPWorkers bounds imap[].workers: each worker holds a message
	// and waits on Redis, and more would only queue for Redis connections.
	MaxIMAPWorkers = 64

	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 50
	DefaultMaxInflightBytes    = 96 << 20
	DefaultMinDataRate         = 1024
	DefaultVerifyPerDomain     = 50
	DefaultVerifyGlobal        = 500

	// A mail loop runs at one message every second or two: 20 a minute
	// from one sender stops it within a minute, far above what a person
	// writes.
	DefaultRateSender          = 20
	DefaultRateSpace           = 1000
	DefaultRateSMTPConnections = 3000
	DefaultRateSMTPMessages    = 3000

	DefaultRetention      = 720 * time.Hour
	DefaultRedisTimeout   = 5 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultVerifyTTL      = 48 * time.Hour
	DefaultVerifyCooldown = 10 * time.Minute
	DefaultPollInterval   = 30 * time.Second
	DefaultDataGrace      = 30 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
)

// ApplyDefaults fills every unset (zero) setting with its default and
// normalizes what is compared later: addresses and domains are lower-cased
// and IDNA-converted (see NormalizeAddress and NormalizeDomain), and a
// trailing slash is dropped from http.public_url. Values that cannot be
// normalized are left as written for Validate to report. Applying the
// defaults twice changes nothing.
func (c *Config) ApplyDefaults() {
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}

	r := &c.Redis
	setString(&r.Prefix, DefaultRedisPrefix)
	setDuration(&r.Retention, DefaultRetention)
	setDuration(&r.Timeout, DefaultRedisTimeout)
	if r.LogMaxLen == 0 {
		r.LogMaxLen = DefaultLogMaxLen
	}

	s := &c.SMTP
	setString(&s.Listen, DefaultSMTPListen)
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	setInt(&s.MaxRecipients, DefaultMaxRecipients)
	setInt(&s.MaxLineLength, DefaultMaxLineLength)
	setDuration(&s.CommandTimeout, DefaultCommandTimeout)
	setInt(&s.MaxConnections, DefaultMaxConnections)
	setInt(&s.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	if s.MaxInflightBytes == 0 {
		s.MaxInflightBytes = DefaultMaxInflightBytes
	}
	setInt(&s.MinDataRate, DefaultMinDataRate)
	setDuration(&s.DataGrace, DefaultDataGrace)
	setDuration(&s.ShutdownGrace, DefaultShutdownGrace)

	h := &c.HTTP
	setString(&h.Listen, DefaultHTTPListen)
	if h.PublicURL == "" {
		h.PublicURL = defaultPublicURL(h.Listen, c.Hostname)
	}
	h.PublicURL = strings.TrimRight(h.PublicURL, "/")

	setString(&c.Outbound.TLS, TLSStartTLS)

	a := &c.Access
	setString(&a.ExternalAccounts, ExternalListedDomains)
	setString(&a.Signup, SignupVerify)
	setString(&a.Authentication.Require, RequireNone)
	normalizeAll(a.InternalDomains, NormalizeDomain)
	normalizeAll(a.ExternalDomains, NormalizeDomain)
	normalizeAll(a.AutomatedAllowed, NormalizeDomain)
	normalizeAll(a.Blocked, normalizeBlocked)

	setDuration(&c.Verify.TTL, DefaultVerifyTTL)
	setDuration(&c.Verify.Cooldown, DefaultVerifyCooldown)
	setInt(&c.Verify.PerDomainPerHour, DefaultVerifyPerDomain)
	setInt(&c.Verify.GlobalPerHour, DefaultVerifyGlobal)

	for _, r := range []struct {
		l     *Limit
		count int
	}{
		{&c.Rate.Sender, DefaultRateSender},
		{&c.Rate.Space, DefaultRateSpace},
		{&c.SMTP.ConnectionRatePerIP, DefaultRateSMTPConnections},
		{&c.SMTP.MessageRatePerIP, DefaultRateSMTPMessages},
	} {
		setInt(&r.l.Count, r.count)
		setDuration(&r.l.Window, time.Minute)
	}

	l := &c.Limits
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setInt(&l.MaxParts, DefaultMaxParts)
	setInt(&l.MaxDepth, DefaultMaxDepth)

	for i := range c.Spaces {
		sp := &c.Spaces[i]
		setString(&sp.Name, sp.Key)
		setString(&sp.ChannelAccess, ChannelOpen)
		normalizeAll(sp.Addresses, NormalizeAddress)
		normalizeAll(sp.Customers, NormalizeAddress)
	}
	for i := range c.Organizations {
		o := &c.Organizations[i]
		normalizeAll(o.Domains, NormalizeDomain)
		normalizeAll(o.Members, NormalizeAddress)
	}
	internal := make(map[string]bool, len(a.InternalDomains))
	for _, d := range a.InternalDomains {
		internal[d] = true
	}
	for i := range c.Customers {
		cu := &c.Customers[i]
		normalizeOne(&cu.Email, NormalizeAddress)
		setString(&cu.Status, StatusActive)
		if cu.Type == "" {
			cu.Type = TypePortal
			if internal[addressDomain(cu.Email)] {
				cu.Type = TypeInternal
			}
		}
	}
	normalizeAll(c.Agents, NormalizeAddress)
	for i := range c.IMAP {
		m := &c.IMAP[i]
		setString(&m.TLS, TLSImplicit)
		setString(&m.Mailbox, DefaultIMAPMailbox)
		setInt(&m.BatchSize, DefaultIMAPBatchSize)
		setInt(&m.Workers, DefaultIMAPWorkers)
		setInt(&m.MaxFailures, DefaultIMAPMaxFailures)
		setDuration(&m.PollInterval, DefaultPollInterval)
		normalizeOne(&m.Address, NormalizeAddress)
	}
}

// defaultPublicURL derives the URL of the HTTP listener; a wildcard
// listen address is replaced by the host name.
func defaultPublicURL(listen, hostname string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen // Validate reports the listen address
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = hostname
	}
	return "http://" + net.JoinHostPort(host, port)
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p *Duration, def time.Duration) {
	if *p == 0 {
		*p = Duration(def)
	}
}

// normalizeOne replaces *p by its normalized form when it has one.
func normalizeOne(p *string, f func(string) (string, error)) {
	if n, err := f(*p); err == nil {
		*p = n
	}
}

func normalizeAll(list []string, f func(string) (string, error)) {
	for i := range list {
		normalizeOne(&list[i], f)
	}
}
