// Package config defines mailgw's YAML configuration: the schema, its
// defaults, validation with field paths, and the environment overrides for
// secrets. A Config is loaded once at start-up and passed down as values;
// no package keeps configuration in globals.
package config

// Config is the whole configuration file.
type Config struct {
	Hostname      string         `yaml:"hostname"`
	Redis         Redis          `yaml:"redis"`
	SMTP          SMTP           `yaml:"smtp"`
	HTTP          HTTP           `yaml:"http"`
	Outbound      Outbound       `yaml:"outbound"`
	Access        Access         `yaml:"access"`
	Verify        Verify         `yaml:"verify"`
	Limits        Limits         `yaml:"limits"`
	Rate          Rate           `yaml:"rate"`
	Spaces        []Space        `yaml:"spaces"`
	Organizations []Organization `yaml:"organizations"`
	Customers     []Customer     `yaml:"customers"`
	Agents        []string       `yaml:"agents"`
	IMAP          []IMAP         `yaml:"imap"`
}

// Redis says where requests, the directory and the decision log live. An
// empty URL means an embedded in-process Redis whose data dies with the process.
type Redis struct {
	URL          string `yaml:"url"`
	Prefix       string `yaml:"prefix"`
	WaitReplicas int    `yaml:"wait_replicas"`
	// Retention is how long raw messages, Message-ID keys (dedupe and
	// threading) and request participants are kept.
	Retention Duration `yaml:"retention"`
	// LogMaxLen caps the decision log stream (approximately, as XADD MAXLEN ~).
	LogMaxLen int64 `yaml:"log_max_len"`
	// Timeout bounds each call to Redis.
	Timeout Duration `yaml:"timeout"`
}

// SMTP configures the listener.
type SMTP struct {
	// Listen is host:port, or "unix:/path" for a socket (LMTP from a local MTA).
	Listen          string   `yaml:"listen"`
	MaxMessageBytes int64    `yaml:"max_message_bytes"`
	MaxRecipients   int      `yaml:"max_recipients"`
	MaxLineLength   int      `yaml:"max_line_length"`
	CommandTimeout  Duration `yaml:"command_timeout"`
	TLS             TLS      `yaml:"tls"`
	LMTP            bool     `yaml:"lmtp"`
	// MaxConnections and MaxConnectionsPerIP bound concurrent sessions;
	// connections over either get 421 and are closed.
	MaxConnections      int `yaml:"max_connections"`
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxInflightBytes bounds the message bytes held in memory by all
	// sessions together; a message that would exceed it gets 451 4.3.1.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// MinDataRate is the least average rate, in bytes per second, a client
	// must keep up during DATA once DataGrace has passed (slowloris).
	MinDataRate int      `yaml:"min_data_rate"`
	DataGrace   Duration `yaml:"data_grace"`
	// ShutdownGrace is how long SIGTERM waits for transactions in flight.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// ConnectionRatePerIP and MessageRatePerIP are counted per instance;
	// over them a connection gets 421 4.7.0, a message 451 4.7.1.
	ConnectionRatePerIP Limit `yaml:"connection_rate_per_ip"`
	MessageRatePerIP    Limit `yaml:"message_rate_per_ip"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HTTP configures the web listener and the public URL used in links.
type HTTP struct {
	Listen    string `yaml:"listen"`
	PublicURL string `yaml:"public_url"`
	// AdminTokenEnv names the environment variable holding the token of
	// the decision-log page and the admin API; without it they are not
	// served at all.
	AdminTokenEnv string `yaml:"admin_token_env"`
}

// Outbound is the smarthost verification mail is sent through.
type Outbound struct {
	Smarthost   string `yaml:"smarthost"`
	From        string `yaml:"from"`
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// TLS is "starttls" (opportunistic: encrypt when offered, certificate
	// not checked), "required" (STARTTLS with a verified certificate) or "none".
	TLS string `yaml:"tls"`
	// CAFile holds PEM certificates trusted for "required", besides the system's.
	CAFile string `yaml:"ca_file"`
}

// Access holds the site-wide customer access settings.
type Access struct {
	InternalDomains  []string       `yaml:"internal_domains"`
	ExternalAccounts string         `yaml:"external_accounts"` // anyone | listed_domains | none
	ExternalDomains  []string       `yaml:"external_domains"`
	Signup           string         `yaml:"signup"` // closed | verify | open
	Blocked          []string       `yaml:"blocked"`
	AutomatedAllowed []string       `yaml:"automated_allowed"`
	Authentication   Authentication `yaml:"authentication"`
}

// Values of Access.ExternalAccounts.
const (
	ExternalAnyone        = "anyone"
	ExternalListedDomains = "listed_domains"
	ExternalNone          = "none"
)

// Values of Access.Signup.
const (
	SignupClosed = "closed"
	SignupVerify = "verify"
	SignupOpen   = "open"
)

// Authentication says which Authentication-Results to trust and what is required.
type Authentication struct {
	TrustedAuthservIDs []string `yaml:"trusted_authserv_ids"`
	VerifyDKIM         bool     `yaml:"verify_dkim"`
	Require            string   `yaml:"require"` // none | dmarc
}

// Verify configures verification of unknown senders.
type Verify struct {
	TTL Duration `yaml:"ttl"`
	// Cooldown is the least time between two verification mails to one address.
	Cooldown Duration `yaml:"cooldown"`
	// PerDomainPerHour and GlobalPerHour bound verification mail; mail over
	// a limit waits in the outbox for the next hour rather than being lost.
	PerDomainPerHour int `yaml:"per_domain_per_hour"`
	GlobalPerHour    int `yaml:"global_per_hour"`
}

// Limits bound what the parser accepts; the message size limit is
// SMTP.MaxMessageBytes and applies to every channel.
type Limits struct {
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	MaxParts       int `yaml:"max_parts"`
	MaxDepth       int `yaml:"max_depth"`
}

// Rate limits floods and mail loops (DESIGN §2 row 6). A Count below zero
// turns a limit off; the SMTP listener has per-IP limits of its own.
type Rate struct {
	// Sender and Space count messages per sender address and per space,
	// over every channel but replay; over the limit is rate_limited: SMTP
	// answers 451 4.7.1 and IMAP leaves the mail for later.
	Sender Limit `yaml:"sender"`
	Space  Limit `yaml:"space"`
}

// Limit allows Count events per Window.
type Limit struct {
	Count  int      `yaml:"count"`
	Window Duration `yaml:"window"`
}

// Off reports whether the limit is turned off.
// A zero Count only occurs before defaults are applied; it limits nothing.
func (l Limit) Off() bool { return l.Count <= 0 }

// Space is a service space (project) with its support addresses.
type Space struct {
	Key           string   `yaml:"key"`
	Name          string   `yaml:"name"`
	Addresses     []string `yaml:"addresses"`
	ChannelAccess string   `yaml:"channel_access"` // open | restricted
	Customers     []string `yaml:"customers"`
	Organizations []string `yaml:"organizations"`
}

// Values of Space.ChannelAccess.
const (
	ChannelOpen       = "open"
	ChannelRestricted = "restricted"
)

// Organization groups customers; unknown senders on its domains join it.
type Organization struct {
	Name    string   `yaml:"name"`
	Domains []string `yaml:"domains"`
	Members []string `yaml:"members"`
}

// Customer seeds the directory. Status defaults to active; Type defaults to
// internal on an internal domain and portal elsewhere.
type Customer struct {
	Email  string `yaml:"email"`
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`   // internal | portal
	Status string `yaml:"status"` // active | pending | disabled
}

// IMAP is one mailbox the poller drains into the space of Address.
type IMAP struct {
	Name         string   `yaml:"name"`
	Addr         string   `yaml:"addr"`
	TLS          string   `yaml:"tls"` // implicit | starttls | none
	Username     string   `yaml:"username"`
	PasswordEnv  string   `yaml:"password_env"`
	PasswordFile string   `yaml:"password_file"`
	Mailbox      string   `yaml:"mailbox"`
	Address      string   `yaml:"address"`
	Processed    string   `yaml:"processed"`
	Rejected     string   `yaml:"rejected"`
	IDLE         bool     `yaml:"idle"`
	PollInterval Duration `yaml:"poll_interval"`
	BatchSize    int      `yaml:"batch_size"`
	// Workers is how many messages of a batch are handled at once; one
	// sender's messages still go one after another.
	Workers int `yaml:"workers"`
	// AllowPlaintext permits tls: none on a non-loopback address, where
	// the password would cross the network in the clear.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// MaxFailures is how often a message may fail before it is moved aside
	// as poison (to Rejected, or flagged seen when there is none).
	MaxFailures int `yaml:"max_failures"`
}
