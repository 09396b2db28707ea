package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// ValidationError lists every problem found in a configuration, each
// prefixed by the path of the offending field, such as
// "spaces[1].addresses[0]: not an email address".
type ValidationError struct {
	Problems []string
}

// Error returns the problems, one per line.
func (e *ValidationError) Error() string {
	return strings.Join(e.Problems, "\n")
}

var (
	spaceKeyRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,19}$`)
	imapNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// problems collects validation problems in the order they are found.
type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

// Validate checks the whole configuration and returns a *ValidationError
// listing all problems, or nil. Call it after ApplyDefaults: unset values
// are reported as invalid, not defaulted. Validate does not change c.
func (c *Config) Validate() error {
	var p problems
	if strings.TrimSpace(c.Hostname) == "" {
		p.add("hostname", "must not be empty")
	} else if strings.ContainsFunc(c.Hostname, isSpaceOrControl) {
		p.add("hostname", "must not contain spaces or control characters")
	}
	c.validateRedis(&p)
	c.validateSMTP(&p)
	c.validateHTTP(&p)
	c.validateOutbound(&p)
	c.validateAccess(&p)
	positive(&p, "verify.ttl", int64(c.Verify.TTL))
	positive(&p, "verify.cooldown", int64(c.Verify.Cooldown))
	for _, r := range []struct {
		path string
		l    Limit
	}{
		{"rate.sender", c.Rate.Sender}, {"rate.space", c.Rate.Space},
		{"smtp.connection_rate_per_ip", c.SMTP.ConnectionRatePerIP}, {"smtp.message_rate_per_ip", c.SMTP.MessageRatePerIP},
	} {
		positive(&p, r.path+".window", int64(r.l.Window))
	}
	positive(&p, "verify.per_domain_per_hour", int64(c.Verify.PerDomainPerHour))
	positive(&p, "verify.global_per_hour", int64(c.Verify.GlobalPerHour))
	positive(&p, "limits.max_header_bytes", int64(c.Limits.MaxHeaderBytes))
	positive(&p, "limits.max_parts", int64(c.Limits.MaxParts))
	positive(&p, "limits.max_depth", int64(c.Limits.MaxDepth))
	spaceOf := c.validateSpaces(&p)
	c.validateOrganizations(&p)
	c.validateCustomers(&p)
	for i, a := range c.Agents {
		address(&p, fmt.Sprintf("agents[%d]", i), a)
	}
	c.validateIMAP(&p, spaceOf)
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

func (c *Config) validateRedis(p *problems) {
	r := c.Redis
	if r.URL != "" && !validRedisURL(r.URL) {
		// The URL is not repeated: it may carry a password.
		p.add("redis.url", "must be a redis://, rediss:// or unix:// URL")
	}
	if r.Prefix == "" {
		p.add("redis.prefix", "must not be empty")
	}
	if r.WaitReplicas < 0 {
		p.add("redis.wait_replicas", "must not be negative")
	}
	positive(p, "redis.retention", int64(r.Retention))
	positive(p, "redis.log_max_len", r.LogMaxLen)
	positive(p, "redis.timeout", int64(r.Timeout))
}

func validRedisURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "redis", "rediss":
		return u.Host != ""
	case "unix":
		return u.Path != ""
	}
	return false
}

func (c *Config) validateSMTP(p *problems) {
	s := c.SMTP
	if path, ok := strings.CutPrefix(s.Listen, "unix:"); ok {
		if path == "" {
			p.add("smtp.listen", "unix: needs a socket path")
		}
	} else if !checkHostPort(s.Listen, true) {
		p.add("smtp.listen", "not a host:port address or unix:/path")
	}
	positive(p, "smtp.max_message_bytes", s.MaxMessageBytes)
	positive(p, "smtp.max_recipients", int64(s.MaxRecipients))
	// RFC 5321 section 4.5.3.1.6: a text line may be 1000 octets with CRLF.
	if s.MaxLineLength < 1000 {
		p.add("smtp.max_line_length", "must be at least 1000 (RFC 5321 allows lines of 1000 octets)")
	}
	positive(p, "smtp.command_timeout", int64(s.CommandTimeout))
	positive(p, "smtp.max_connections", int64(s.MaxConnections))
	positive(p, "smtp.max_connections_per_ip", int64(s.MaxConnectionsPerIP))
	if s.MaxInflightBytes < s.MaxMessageBytes {
		p.add("smtp.max_inflight_bytes", "must be at least smtp.max_message_bytes, or no message of the largest size could be received")
	}
	positive(p, "smtp.min_data_rate", int64(s.MinDataRate))
	positive(p, "smtp.data_grace", int64(s.DataGrace))
	positive(p, "smtp.shutdown_grace", int64(s.ShutdownGrace))
	switch {
	case s.TLS.Cert != "" && s.TLS.Key == "":
		p.add("smtp.tls.key", "required with smtp.tls.cert")
	case s.TLS.Cert == "" && s.TLS.Key != "":
		p.add("smtp.tls.cert", "required with smtp.tls.key")
	}
}

func (c *Config) validateHTTP(p *problems) {
	h := c.HTTP
	if !checkHostPort(h.Listen, true) {
		p.add("http.listen", "not a host:port address")
	}
	u, err := url.Parse(h.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		p.add("http.public_url", "must be an absolute http:// or https:// URL without query or fragment")
	}
	if h.AdminTokenEnv != "" && !isEnvName(h.AdminTokenEnv) {
		p.add("http.admin_token_env", "not an environment variable name")
	}
}

func (c *Config) validateOutbound(p *problems) {
	o := c.Outbound
	if o.Smarthost != "" && !checkHostPort(o.Smarthost, false) {
		p.add("outbound.smarthost", "not a host:port address")
	}
	switch {
	case o.From != "":
		if a, err := mail.ParseAddress(o.From); err != nil {
			p.add("outbound.from", "not an email address")
		} else if _, err := NormalizeAddress(a.Address); err != nil {
			p.add("outbound.from", "not an email address")
		}
	case o.Smarthost != "":
		p.add("outbound.from", "required when outbound.smarthost is set")
	}
	switch {
	case o.PasswordEnv != "" && !isEnvName(o.PasswordEnv):
		p.add("outbound.password_env", "not an environment variable name")
	case o.PasswordEnv != "" && o.Username == "":
		p.add("outbound.username", "required with outbound.password_env")
	case o.PasswordEnv == "" && o.Username != "":
		p.add("outbound.password_env", "required with outbound.username")
	}
	switch o.TLS {
	case TLSStartTLS, TLSRequired, TLSNone:
	default:
		p.add("outbound.tls", "must be starttls, required or none")
	}
	if o.CAFile != "" {
		if _, err := os.Stat(o.CAFile); err != nil {
			p.add("outbound.ca_file", "cannot be read")
		}
	}
}

func (c *Config) validateAccess(p *problems) {
	a := c.Access
	domains(p, "access.internal_domains", a.InternalDomains)
	switch a.ExternalAccounts {
	case ExternalAnyone, ExternalListedDomains, ExternalNone:
	default:
		p.add("access.external_accounts", "must be anyone, listed_domains or none")
	}
	domains(p, "access.external_domains", a.ExternalDomains)
	switch a.Signup {
	case SignupClosed, SignupVerify, SignupOpen:
	default:
		p.add("access.signup", "must be closed, verify or open")
	}
	for i, b := range a.Blocked {
		if _, err := normalizeBlocked(b); err != nil {
			p.add(fmt.Sprintf("access.blocked[%d]", i), "must be an address, a domain or *.domain")
		}
	}
	domains(p, "access.automated_allowed", a.AutomatedAllowed)
	au := a.Authentication
	for i, id := range au.TrustedAuthservIDs {
		if id == "" || strings.ContainsFunc(id, isSpaceOrControl) {
			p.add(fmt.Sprintf("access.authentication.trusted_authserv_ids[%d]", i), "must be a non-empty token without spaces")
		}
	}
	switch au.Require {
	case RequireNone:
	case RequireDMARC:
		if len(au.TrustedAuthservIDs) == 0 && !au.VerifyDKIM {
			p.add("access.authentication.require", "dmarc needs trusted_authserv_ids or verify_dkim, or no mail could pass")
		}
	default:
		p.add("access.authentication.require", "must be none or dmarc")
	}
}

// validateSpaces checks the spaces and returns the space index of every
// valid support address.
func (c *Config) validateSpaces(p *problems) map[string]int {
	if len(c.Spaces) == 0 {
		p.add("spaces", "at least one space is required")
	}
	orgs := make(map[string]bool, len(c.Organizations))
	for _, o := range c.Organizations {
		orgs[o.Name] = true
	}
	keys := make(map[string]int)
	owner := make(map[string]string) // address -> path that routes it
	spaceOf := make(map[string]int)
	for i, s := range c.Spaces {
		path := fmt.Sprintf("spaces[%d]", i)
		switch {
		case s.Key == "":
			p.add(path+".key", "must not be empty")
		case !spaceKeyRE.MatchString(s.Key):
			p.add(path+".key", "must be 1 to 20 upper-case letters, digits or _, starting with a letter")
		default:
			if j, dup := keys[s.Key]; dup {
				p.add(path+".key", "%q is already the key of spaces[%d]", s.Key, j)
			} else {
				keys[s.Key] = i
			}
		}
		if s.Key != "" && strings.TrimSpace(s.Name) == "" {
			p.add(path+".name", "must not be empty")
		}
		if len(s.Addresses) == 0 {
			p.add(path+".addresses", "at least one address is required")
		}
		for j, a := range s.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", path, j)
			n, ok := address(p, ap, a)
			if !ok {
				continue
			}
			if first, dup := owner[n]; dup {
				p.add(ap, "%q is already routed by %s", n, first)
				continue
			}
			owner[n] = ap
			spaceOf[n] = i
		}
		switch s.ChannelAccess {
		case ChannelOpen, ChannelRestricted:
		default:
			p.add(path+".channel_access", "must be open or restricted")
		}
		for j, a := range s.Customers {
			address(p, fmt.Sprintf("%s.customers[%d]", path, j), a)
		}
		for j, o := range s.Organizations {
			if !orgs[o] {
				p.add(fmt.Sprintf("%s.organizations[%d]", path, j), "unknown organization %q", o)
			}
		}
	}
	return spaceOf
}

func (c *Config) validateOrganizations(p *problems) {
	names := make(map[string]int)
	domainOwner := make(map[string]int)
	for i, o := range c.Organizations {
		path := fmt.Sprintf("organizations[%d]", i)
		if strings.TrimSpace(o.Name) == "" {
			p.add(path+".name", "must not be empty")
		} else if j, dup := names[o.Name]; dup {
			p.add(path+".name", "%q is already the name of organizations[%d]", o.Name, j)
		} else {
			names[o.Name] = i
		}
		for j, d := range o.Domains {
			dp := fmt.Sprintf("%s.domains[%d]", path, j)
			n, err := NormalizeDomain(d)
			if err != nil {
				p.add(dp, "%v", err)
				continue
			}
			if k, dup := domainOwner[n]; dup && k != i {
				p.add(dp, "%q is already a domain of organizations[%d]", n, k)
				continue
			}
			domainOwner[n] = i
		}
		for j, m := range o.Members {
			address(p, fmt.Sprintf("%s.members[%d]", path, j), m)
		}
	}
}

func (c *Config) validateCustomers(p *problems) {
	seen := make(map[string]int)
	for i, cu := range c.Customers {
		path := fmt.Sprintf("customers[%d]", i)
		if n, ok := address(p, path+".email", cu.Email); ok {
			if j, dup := seen[n]; dup {
				p.add(path+".email", "%q is already customers[%d]", n, j)
			} else {
				seen[n] = i
			}
		}
		switch cu.Type {
		case TypeInternal, TypePortal:
		default:
			p.add(path+".type", "must be internal or portal")
		}
		switch cu.Status {
		case StatusActive, StatusPending, StatusDisabled:
		default:
			p.add(path+".status", "must be active, pending or disabled")
		}
	}
}

func (c *Config) validateIMAP(p *problems, spaceOf map[string]int) {
	names := make(map[string]int)
	for i, m := range c.IMAP {
		path := fmt.Sprintf("imap[%d]", i)
		switch {
		case m.Name == "":
			p.add(path+".name", "must not be empty")
		case !imapNameRE.MatchString(m.Name):
			p.add(path+".name", "must contain only letters, digits, _, . and -")
		default:
			if j, dup := names[m.Name]; dup {
				p.add(path+".name", "%q is already the name of imap[%d]", m.Name, j)
			} else {
				names[m.Name] = i
			}
		}
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil || !checkHostPort(m.Addr, false) {
			p.add(path+".addr", "not a host:port address")
		}
		switch m.TLS {
		case TLSImplicit, TLSStartTLS:
		case TLSNone:
			if err == nil && !isLoopbackHost(host) && !m.AllowPlaintext {
				p.add(path+".tls", "none is only allowed on a loopback address unless allow_plaintext is set")
			}
		default:
			p.add(path+".tls", "must be implicit, starttls or none")
		}
		if strings.TrimSpace(m.Username) == "" {
			p.add(path+".username", "must not be empty")
		}
		switch {
		case m.PasswordEnv == "" && m.PasswordFile == "":
			p.add(path+".password_env", "one of password_env and password_file is required")
		case m.PasswordEnv != "" && m.PasswordFile != "":
			p.add(path+".password_file", "password_env and password_file are mutually exclusive")
		case m.PasswordEnv != "" && !isEnvName(m.PasswordEnv):
			p.add(path+".password_env", "not an environment variable name")
		}
		if m.Mailbox == "" {
			p.add(path+".mailbox", "must not be empty")
		}
		if n, ok := address(p, path+".address", m.Address); ok {
			if _, routed := spaceOf[n]; !routed {
				p.add(path+".address", "not a space address")
			}
		}
		if m.Processed != "" && m.Processed == m.Mailbox {
			p.add(path+".processed", "must differ from mailbox")
		}
		if m.Rejected != "" && m.Rejected == m.Mailbox {
			p.add(path+".rejected", "must differ from mailbox")
		}
		positive(p, path+".poll_interval", int64(m.PollInterval))
		positive(p, path+".batch_size", int64(m.BatchSize))
		switch {
		case m.Workers <= 0:
			p.add(path+".workers", "must be positive")
		case m.Workers > MaxIMAPWorkers:
			p.add(path+".workers", "must be at most %d", MaxIMAPWorkers)
		}
		positive(p, path+".max_failures", int64(m.MaxFailures))
	}
}

// address reports whether s is a valid bare address and returns its
// normalized form.
func address(p *problems, path, s string) (string, bool) {
	n, err := NormalizeAddress(s)
	if err != nil {
		p.add(path, "%v", err)
		return "", false
	}
	return n, true
}

func domains(p *problems, path string, list []string) {
	for i, d := range list {
		if _, err := NormalizeDomain(d); err != nil {
			p.add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
	}
}

func positive(p *problems, path string, v int64) {
	if v <= 0 {
		p.add(path, "must be positive")
	}
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}
