package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid configuration.
const minimal = "spaces: [{key: IT, addresses: [it@example.com]}]\n"

func parseProblems(t *testing.T, y string) []string {
	t.Helper()
	_, err := Parse([]byte(y))
	if err == nil {
		t.Fatalf("Parse succeeded, want a validation error for:\n%s", y)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error %q (%T) is not a *ValidationError", err, err)
	}
	if !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("error %q lacks the config: prefix", err)
	}
	return ve.Problems
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"hostname", c.Hostname, host},
		{"redis.url", c.Redis.URL, ""},
		{"redis.prefix", c.Redis.Prefix, "mailgw:"},
		{"redis.wait_replicas", c.Redis.WaitReplicas, 0},
		{"redis.retention", c.Redis.Retention.D(), 720 * time.Hour},
		{"redis.log_max_len", c.Redis.LogMaxLen, int64(100000)},
		{"redis.timeout", c.Redis.Timeout.D(), 5 * time.Second},
		{"smtp.listen", c.SMTP.Listen, "127.0.0.1:2525"},
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes, int64(26214400)},
		{"smtp.max_recipients", c.SMTP.MaxRecipients, 100},
		{"smtp.max_line_length", c.SMTP.MaxLineLength, 2000},
		{"smtp.command_timeout", c.SMTP.CommandTimeout.D(), 5 * time.Minute},
		{"smtp.lmtp", c.SMTP.LMTP, false},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:8080"},
		{"http.public_url", c.HTTP.PublicURL, "http://127.0.0.1:8080"},
		{"outbound.tls", c.Outbound.TLS, "starttls"},
		{"access.external_accounts", c.Access.ExternalAccounts, "listed_domains"},
		{"access.signup", c.Access.Signup, "verify"},
		{"access.authentication.require", c.Access.Authentication.Require, "none"},
		{"verify.ttl", c.Verify.TTL.D(), 48 * time.Hour},
		{"verify.cooldown", c.Verify.Cooldown.D(), 10 * time.Minute},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, 1048576},
		{"limits.max_parts", c.Limits.MaxParts, 1000},
		{"limits.max_depth", c.Limits.MaxDepth, 20},
		{"spaces[0].name", c.Spaces[0].Name, "IT"},
		{"spaces[0].channel_access", c.Spaces[0].ChannelAccess, "open"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestDefaultsNested(t *testing.T) {
	c, err := Parse([]byte(`
http: {listen: "0.0.0.0:8443"}
hostname: mx.example.com
access: {internal_domains: [Example.COM]}
spaces:
  - {key: IT, addresses: [it@example.com]}
customers:
  - {email: carol@example.com}
  - {email: dave@elsewhere.example}
  - {email: erin@example.com, type: portal, status: pending}
imap:
  - {name: box, addr: "imap.example.com:993", username: u, password_file: /run/secrets/imap, address: it@example.com}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HTTP.PublicURL; got != "http://mx.example.com:8443" {
		t.Errorf("public_url = %q", got)
	}
	wantCustomers := []Customer{
		{Email: "carol@example.com", Type: "internal", Status: "active"},
		{Email: "dave@elsewhere.example", Type: "portal", Status: "active"},
		{Email: "erin@example.com", Type: "portal", Status: "pending"},
	}
	if !reflect.DeepEqual(c.Customers, wantCustomers) {
		t.Errorf("customers = %+v\nwant %+v", c.Customers, wantCustomers)
	}
	m := c.IMAP[0]
	if m.Mailbox != "INBOX" || m.TLS != "implicit" || m.BatchSize != 50 || m.Workers != 8 ||
		m.PollInterval.D() != 30*time.Second || m.IDLE {
		t.Errorf("imap defaults: %+v", m)
	}
}

func TestNormalization(t *testing.T) {
	c, err := Parse([]byte(`
http: {public_url: "https://help.example.com/"}
access:
  internal_domains: [Example.COM, bücher.example]
  external_domains: [PARTNER.example]
  blocked: [Spam.Example, "*.Bad.Example", Evil@Spam.Example]
  automated_allowed: [Monitor.Example]
spaces:
  - {key: IT, addresses: [IT@Example.COM, Hilfe@Bücher.example], customers: [Zoë@Example.com]}
organizations:
  - {name: P, domains: [Partner.Example], members: [Bob@Partner.Example]}
customers:
  - {email: Carol@BÜCHER.example}
agents: [Agent@Example.com]
imap:
  - {name: box, addr: "127.0.0.1:143", tls: none, username: u, password_env: P, address: It@example.com}
`))
	if err != nil {
		t.Fatal(err)
	}
	eq := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	eq("public_url", c.HTTP.PublicURL, "https://help.example.com")
	eq("internal_domains", c.Access.InternalDomains, []string{"example.com", "xn--bcher-kva.example"})
	eq("external_domains", c.Access.ExternalDomains, []string{"partner.example"})
	eq("blocked", c.Access.Blocked, []string{"spam.example", "*.bad.example", "evil@spam.example"})
	eq("automated_allowed", c.Access.AutomatedAllowed, []string{"monitor.example"})
	eq("addresses", c.Spaces[0].Addresses, []string{"it@example.com", "hilfe@xn--bcher-kva.example"})
	eq("space customers", c.Spaces[0].Customers, []string{"zoë@example.com"})
	eq("org domains", c.Organizations[0].Domains, []string{"partner.example"})
	eq("org members", c.Organizations[0].Members, []string{"bob@partner.example"})
	eq("customer", c.Customers[0].Email, "carol@xn--bcher-kva.example")
	eq("customer type", c.Customers[0].Type, "internal")
	eq("agents", c.Agents, []string{"agent@example.com"})
	eq("imap address", c.IMAP[0].Address, "it@example.com")
}

func TestValidationProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"no spaces", "hostname: h\n", []string{"spaces: at least one space is required"}},
		{"redis url scheme", minimal + `redis: {url: "http://secret@host:6379"}`,
			[]string{"redis.url: must be a redis://, rediss:// or unix:// URL"}},
		{"redis url no host", minimal + `redis: {url: "redis://"}`,
			[]string{"redis.url: must be a redis://, rediss:// or unix:// URL"}},
		{"redis negatives", minimal + `redis: {wait_replicas: -1, retention: -1h, log_max_len: -5, timeout: -1s}`,
			[]string{
				"redis.wait_replicas: must not be negative",
				"redis.retention: must be positive",
				"redis.log_max_len: must be positive",
				"redis.timeout: must be positive",
			}},
		{"smtp listen", minimal + `smtp: {listen: "localhost"}`, []string{"smtp.listen: not a host:port address or unix:/path"}},
		{"smtp unix listen without path", minimal + `smtp: {listen: "unix:"}`, []string{"smtp.listen: unix: needs a socket path"}},
		{"inflight below message size", minimal + `smtp: {max_message_bytes: 2000, max_inflight_bytes: 1000}`, []string{"smtp.max_inflight_bytes: must be at least smtp.max_message_bytes, or no message of the largest size could be received"}},
		{"smtp limits", minimal + `smtp: {max_message_bytes: -1, max_recipients: -2, max_line_length: 512, command_timeout: -1}`,
			[]string{
				"smtp.max_message_bytes: must be positive",
				"smtp.max_recipients: must be positive",
				"smtp.max_line_length: must be at least 1000 (RFC 5321 allows lines of 1000 octets)",
				"smtp.command_timeout: must be positive",
			}},
		{"smtp tls cert only", minimal + `smtp: {tls: {cert: /c.pem}}`, []string{"smtp.tls.key: required with smtp.tls.cert"}},
		{"smtp tls key only", minimal + `smtp: {tls: {key: /k.pem}}`, []string{"smtp.tls.cert: required with smtp.tls.key"}},
		{"http listen", minimal + `http: {listen: "8080", public_url: "http://x"}`, []string{"http.listen: not a host:port address"}},
		{"http public url", minimal + `http: {public_url: "ftp://x/"}`,
			[]string{"http.public_url: must be an absolute http:// or https:// URL without query or fragment"}},
		{"http admin token env", minimal + `http: {admin_token_env: "ADMIN TOKEN"}`,
			[]string{"http.admin_token_env: not an environment variable name"}},
		{"http public url relative", minimal + `http: {public_url: "/verify"}`,
			[]string{"http.public_url: must be an absolute http:// or https:// URL without query or fragment"}},
		{"outbound", minimal + `outbound: {smarthost: "relay.example.com", tls: maybe, username: u}`,
			[]string{
				"outbound.smarthost: not a host:port address",
				"outbound.from: required when outbound.smarthost is set",
				"outbound.password_env: required with outbound.username",
				"outbound.tls: must be starttls, required or none",
			}},
		{"outbound from", minimal + `outbound: {smarthost: "relay.example.com:25", from: "Support <nope>", password_env: "MY PASS"}`,
			[]string{
				"outbound.from: not an email address",
				"outbound.password_env: not an environment variable name",
			}},
		{"outbound password without user", minimal + `outbound: {smarthost: "relay.example.com:587", from: s@example.com, password_env: SMTP_PASSWORD}`,
			[]string{"outbound.username: required with outbound.password_env"}},
		{"access enums", minimal + `access: {external_accounts: some, signup: maybe, authentication: {require: spf}}`,
			[]string{
				"access.external_accounts: must be anyone, listed_domains or none",
				"access.signup: must be closed, verify or open",
				"access.authentication.require: must be none or dmarc",
			}},
		{"access domains", minimal + `access: {internal_domains: [ok.example, "bad domain"], external_domains: ["a..b"], automated_allowed: ["1.2.3.4"]}`,
			[]string{
				"access.internal_domains[1]: not a domain name",
				"access.external_domains[0]: not a domain name",
				"access.automated_allowed[0]: not a domain name",
			}},
		{"access blocked", minimal + `access: {blocked: [ok.example, "*.ok.example", a@ok.example, "*@x.example", "**.x.example", "x_y.example"]}`,
			[]string{
				"access.blocked[3]: must be an address, a domain or *.domain",
				"access.blocked[4]: must be an address, a domain or *.domain",
				"access.blocked[5]: must be an address, a domain or *.domain",
			}},
		{"dmarc without trust", minimal + `access: {authentication: {require: dmarc, trusted_authserv_ids: [""]}}`,
			[]string{
				"access.authentication.trusted_authserv_ids[0]: must be a non-empty token without spaces",
			}},
		{"dmarc with nothing", minimal + `access: {authentication: {require: dmarc}}`,
			[]string{"access.authentication.require: dmarc needs trusted_authserv_ids or verify_dkim, or no mail could pass"}},
		{"verify and limits", minimal + "verify: {ttl: -1h, cooldown: -1m}\nlimits: {max_header_bytes: -1, max_parts: -1, max_depth: -1}",
			[]string{
				"verify.ttl: must be positive",
				"verify.cooldown: must be positive",
				"limits.max_header_bytes: must be positive",
				"limits.max_parts: must be positive",
				"limits.max_depth: must be positive",
			}},
		{"space address", `spaces: [{key: IT, addresses: [it@example.com]}, {key: BILL, addresses: ["Billing <billing@example.com>"]}]`,
			[]string{"spaces[1].addresses[0]: not an email address"}},
		{"space address forms", `spaces: [{key: IT, addresses: [it, "<it@example.com>", "\"i t\"@example.com", "it@", "@example.com", "it@exa_mple.com", "it@example.com (IT)"]}]`,
			[]string{
				"spaces[0].addresses[0]: not an email address",
				"spaces[0].addresses[1]: not an email address",
				"spaces[0].addresses[2]: not an email address",
				"spaces[0].addresses[3]: not an email address",
				"spaces[0].addresses[4]: not an email address",
				"spaces[0].addresses[5]: not an email address",
				"spaces[0].addresses[6]: not an email address",
			}},
		{"space channel access", `spaces: [{key: IT, addresses: [it@example.com]}, {key: BILL, addresses: [b@example.com], channel_access: closed}]`,
			[]string{"spaces[1].channel_access: must be open or restricted"}},
		{"space keys", `spaces: [{key: it, addresses: [a@example.com]}, {addresses: [b@example.com]}, {key: IT1, addresses: [c@example.com]}, {key: IT1, addresses: [d@example.com]}, {key: ABCDEFGHIJKLMNOPQRSTU, addresses: [e@example.com]}]`,
			[]string{
				"spaces[0].key: must be 1 to 20 upper-case letters, digits or _, starting with a letter",
				"spaces[1].key: must not be empty",
				`spaces[3].key: "IT1" is already the key of spaces[2]`,
				"spaces[4].key: must be 1 to 20 upper-case letters, digits or _, starting with a letter",
			}},
		{"space without addresses", `spaces: [{key: IT}]`, []string{"spaces[0].addresses: at least one address is required"}},
		{"address in two spaces", `spaces: [{key: IT, addresses: [it@example.com, help@example.com]}, {key: BILL, addresses: [billing@example.com, Help@Example.com]}]`,
			[]string{`spaces[1].addresses[1]: "help@example.com" is already routed by spaces[0].addresses[1]`}},
		{"space customers and orgs", `spaces: [{key: IT, addresses: [it@example.com]}, {key: BILL, addresses: [b@example.com], customers: [x@example.com, y], organizations: [Partner, X]}]
organizations: [{name: Partner}]`,
			[]string{
				"spaces[1].customers[1]: not an email address",
				`spaces[1].organizations[1]: unknown organization "X"`,
			}},
		{"organizations", minimal + `organizations: [{name: A, domains: [a.example, "-a.example"], members: [m@a.example, nobody]}, {name: A}, {name: ""}, {name: B, domains: [A.example]}]`,
			[]string{
				"organizations[0].domains[1]: not a domain name",
				"organizations[0].members[1]: not an email address",
				`organizations[1].name: "A" is already the name of organizations[0]`,
				"organizations[2].name: must not be empty",
				`organizations[3].domains[0]: "a.example" is already a domain of organizations[0]`,
			}},
		{"customers", minimal + `customers: [{email: a@example.com}, {email: A@example.com}, {email: x, type: agent, status: gone}]`,
			[]string{
				`customers[1].email: "a@example.com" is already customers[0]`,
				"customers[2].email: not an email address",
				"customers[2].type: must be internal or portal",
				"customers[2].status: must be active, pending or disabled",
			}},
		{"agents", minimal + `agents: [a@example.com, "Agent <a@example.com>"]`, []string{"agents[1]: not an email address"}},
		{"imap not a space address", minimal + `imap: [{name: box, addr: "127.0.0.1:143", username: u, password_env: P, address: other@example.com}]`,
			[]string{"imap[0].address: not a space address"}},
		{"imap fields", minimal + `imap:
  - {name: "a b", addr: "imap.example.com", tls: ssl, password_env: P, password_file: /f, address: bad, batch_size: -1, poll_interval: -1s, workers: -1}
  - {name: x, addr: "imap.example.com:143", tls: none, username: u, address: it@example.com, mailbox: Mail, processed: Mail, rejected: Mail, workers: 65}
  - {name: x, addr: "imap.example.com:143", tls: none, allow_plaintext: true, username: u, password_env: "1X", address: it@example.com}
  - {name: "", addr: "[::1]:143", tls: none, username: u, password_env: P, address: it@example.com}`,
			[]string{
				"imap[0].name: must contain only letters, digits, _, . and -",
				"imap[0].addr: not a host:port address",
				"imap[0].tls: must be implicit, starttls or none",
				"imap[0].username: must not be empty",
				"imap[0].password_file: password_env and password_file are mutually exclusive",
				"imap[0].address: not an email address",
				"imap[0].poll_interval: must be positive",
				"imap[0].batch_size: must be positive",
				"imap[0].workers: must be positive",
				"imap[1].tls: none is only allowed on a loopback address unless allow_plaintext is set",
				"imap[1].password_env: one of password_env and password_file is required",
				"imap[1].processed: must differ from mailbox",
				"imap[1].rejected: must differ from mailbox",
				"imap[1].workers: must be at most 64",
				`imap[2].name: "x" is already the name of imap[1]`,
				"imap[2].password_env: not an environment variable name",
				"imap[3].name: must not be empty",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseProblems(t, tt.yaml)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// TestValidRedisURLs checks the accepted Redis URL forms.
func TestValidRedisURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://user:pw@redis.example.com:6380", "unix:///run/redis.sock", "redis://localhost"} {
		if _, err := Parse([]byte(minimal + "redis: {url: \"" + u + "\"}")); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestRedisURLNotInErrors(t *testing.T) {
	_, err := Parse([]byte(minimal + `redis: {url: "http://user:hunter2@host"}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v: want an error that does not show the password", err)
	}
}

func TestMultipleProblemsTogether(t *testing.T) {
	_, err := Parse([]byte(`
access: {signup: sometimes}
spaces:
  - {key: IT, addresses: [it@example.com]}
  - {key: BILL, addresses: [nope], channel_access: semi}
`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	want := []string{
		"access.signup: must be closed, verify or open",
		"spaces[1].addresses[0]: not an email address",
		"spaces[1].channel_access: must be open or restricted",
	}
	if !slices.Equal(ve.Problems, want) {
		t.Errorf("problems = %q, want %q", ve.Problems, want)
	}
	if got := ve.Error(); got != strings.Join(want, "\n") {
		t.Errorf("ValidationError.Error() = %q", got)
	}
	wantMsg := "config: 3 problems:\n" + strings.Join(want, "\n")
	if err.Error() != wantMsg {
		t.Errorf("error = %q, want %q", err, wantMsg)
	}
}

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level field", "hostname: h\nspaces: []\nsmpt: {}\n",
			[]string{"smpt: unknown field (line 3)"}},
		{"unknown nested field", "redis:\n  url: redis://x\n  prefx: a\n",
			[]string{"redis.prefx: unknown field (line 3)"}},
		{"unknown field in list item", "spaces:\n  - key: IT\n    adresses: [it@example.com]\n",
			[]string{"spaces[0].adresses: unknown field (line 3)"}},
		{"unknown fields deep and many", "access: {authentication: {requires: dmarc}}\nimap: [{name: a, passwd: x}]\n",
			[]string{
				"access.authentication.requires: unknown field (line 1)",
				"imap[0].passwd: unknown field (line 2)",
			}},
		{"scalar for a list", "spaces: [{key: IT, addresses: it@example.com}]",
			[]string{"spaces[0].addresses: must be a list (line 1)"}},
		{"list for a mapping", "redis: [a, b]", []string{"redis: must be a mapping (line 1)"}},
		{"mapping for a string", "hostname: {a: b}", []string{"hostname: must be a string (line 1)"}},
		{"string for an int", "smtp:\n  max_recipients: many\n", []string{"smtp.max_recipients: must be an integer (line 2)"}},
		{"string for a bool", "smtp: {lmtp: perhaps}", []string{"smtp.lmtp: must be true or false (line 1)"}},
		{"bad duration", "verify:\n  ttl: two days\n",
			[]string{`verify.ttl: invalid duration "two days": use a number with a unit, such as 90s, 10m or 48h (line 2)`}},
		{"duplicate key", "hostname: a\nhostname: b\n", []string{"hostname: set twice (first on line 1) (line 2)"}},
		{"top level list", "- a\n- b\n", []string{"configuration: must be a mapping (line 1)"}},
		{"anchor under an unknown key", "base: &b {prefix: x}\n", []string{"base: unknown field (line 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseProblems(t, tt.yaml)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestMergeKeys(t *testing.T) {
	c, err := Parse([]byte(`
spaces:
  - &it {key: IT, addresses: [it@example.com], channel_access: restricted}
  - <<: *it
    key: HR
    addresses: [hr@example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Spaces[1]; got.Key != "HR" || got.ChannelAccess != "restricted" {
		t.Errorf("merged space = %+v", got)
	}
	problems := parseProblems(t, `
spaces:
  - &it {key: IT, addresses: [it@example.com], chanel_access: restricted}
  - <<: *it
    key: HR
    addresses: [hr@example.com]
`)
	want := []string{"spaces[0].chanel_access: unknown field (line 3)", "spaces[1].chanel_access: unknown field (line 3)"}
	if !slices.Equal(problems, want) {
		t.Errorf("problems = %q, want %q", problems, want)
	}
}

func TestSyntaxErrorIsPlain(t *testing.T) {
	for _, y := range []string{"spaces: [\n", "a: b\n c: d\n", "hostname: a\n---\nhostname: b\n"} {
		_, err := Parse([]byte(y))
		if err == nil {
			t.Fatalf("Parse(%q): no error", y)
		}
		var ve *ValidationError
		if errors.As(err, &ve) {
			t.Errorf("Parse(%q): syntax error %q is a *ValidationError", y, err)
		}
		if !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("Parse(%q): error %q lacks the config: prefix", y, err)
		}
	}
}

func TestEmptyConfigNeedsSpaces(t *testing.T) {
	for _, y := range []string{"", "# nothing\n", "---\n"} {
		problems := parseProblems(t, y)
		if !slices.Equal(problems, []string{"spaces: at least one space is required"}) {
			t.Errorf("Parse(%q) problems = %q", y, problems)
		}
	}
	if _, err := Load(""); err == nil {
		t.Error(`Load(""): no error, want "at least one space"`)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{"MAILGW_REDIS_URL": "redis://override:6379/1", "IMAP_PASSWORD": "secret"}
	c, err := Parse([]byte(minimal + `redis: {url: "redis://file:6379/0"}`))
	if err != nil {
		t.Fatal(err)
	}
	ApplyEnv(c, func(k string) string { return env[k] })
	if c.Redis.URL != "redis://override:6379/1" {
		t.Errorf("redis.url = %q", c.Redis.URL)
	}
	ApplyEnv(c, func(string) string { return "" })
	if c.Redis.URL != "redis://override:6379/1" {
		t.Errorf("empty variable changed redis.url to %q", c.Redis.URL)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mailgw.yaml")
	if err := os.WriteFile(path, []byte(minimal+`redis: {url: "redis://file:6379/0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MAILGW_REDIS_URL", "redis://env:6379/2")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.URL != "redis://env:6379/2" {
		t.Errorf("redis.url = %q, want the MAILGW_REDIS_URL value", c.Redis.URL)
	}

	t.Setenv("MAILGW_REDIS_URL", "ftp://env")
	_, err = Load(path)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load with a bad MAILGW_REDIS_URL: %v", err)
	}
	if want := "config: " + path + ": redis.url: must be a redis://, rediss:// or unix:// URL"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestDesignExample(t *testing.T) {
	t.Setenv("MAILGW_REDIS_URL", "")
	c, err := Load("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mx.example.com" || len(c.Spaces) != 2 || c.Spaces[1].Organizations[0] != "Partner" {
		t.Errorf("unexpected config: %+v", c)
	}
	m := c.IMAP[0]
	if m.PasswordEnv != "IMAP_PASSWORD" || !m.IDLE || m.TLS != "none" || m.BatchSize != 50 {
		t.Errorf("imap[0] = %+v", m)
	}
	if c.Verify.TTL.D() != 48*time.Hour || c.Verify.Cooldown.D() != 10*time.Minute {
		t.Errorf("verify = %+v", c.Verify)
	}
	if c.Outbound.From != "Example Support <support@example.com>" {
		t.Errorf("outbound.from = %q", c.Outbound.From)
	}
}

func TestDemo(t *testing.T) {
	c := Demo()
	if err := c.Validate(); err != nil {
		t.Fatalf("Demo does not validate: %v", err)
	}
	if c.Hostname != "localhost" || c.Redis.URL != "" {
		t.Errorf("hostname %q, redis.url %q", c.Hostname, c.Redis.URL)
	}
	if len(c.Spaces) != 2 || c.Spaces[0].Key != "IT" || c.Spaces[1].Key != "BILL" ||
		c.Spaces[1].ChannelAccess != ChannelRestricted || c.Spaces[0].ChannelAccess != ChannelOpen {
		t.Errorf("spaces = %+v", c.Spaces)
	}
	if c.Access.Signup != SignupVerify || c.Access.ExternalAccounts != ExternalListedDomains {
		t.Errorf("access = %+v", c.Access)
	}
	if c.Customers[0].Status != StatusActive || c.Customers[1].Type != TypePortal {
		t.Errorf("customers = %+v", c.Customers)
	}
	// Each call is independent.
	Demo().Spaces[0].Addresses[0] = "changed@demo.example"
	if Demo().Spaces[0].Addresses[0] != "it@demo.example" {
		t.Error("Demo shares state between calls")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	for name, c := range map[string]*Config{"demo": Demo(), "design": mustParseFile(t, "testdata/design.yaml")} {
		t.Run(name, func(t *testing.T) {
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("printed config does not load: %v\n%s", err, out)
			}
			again, err := back.YAML()
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(out) {
				t.Errorf("round trip changed the config:\n%s\n---\n%s", out, again)
			}
			if back.Redis != c.Redis || back.SMTP != c.SMTP || back.Verify != c.Verify {
				t.Errorf("round trip changed settings: %+v", back)
			}
			if !strings.Contains(string(out), "ttl: 48h\n") {
				t.Errorf("durations not printed in string form:\n%s", out)
			}
		})
	}
}

func TestYAMLRedactsRedisPassword(t *testing.T) {
	c := Demo()
	c.Redis.URL = "redis://user:hunter2@redis.example.com:6379/0?sentinel_password=swordfish&master_name=m"
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), "swordfish") {
		t.Errorf("password printed:\n%s", out)
	}
	if !strings.Contains(string(out), "redis.example.com:6379") {
		t.Errorf("redis.url lost its host:\n%s", out)
	}
	if c.Redis.URL != "redis://user:hunter2@redis.example.com:6379/0?sentinel_password=swordfish&master_name=m" {
		t.Error("YAML changed the config")
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	c := mustParseFile(t, "testdata/design.yaml")
	before, _ := c.YAML()
	c.ApplyDefaults()
	after, _ := c.YAML()
	if string(before) != string(after) {
		t.Errorf("second ApplyDefaults changed the config:\n%s\n---\n%s", before, after)
	}
}

func mustParseFile(t *testing.T, path string) *Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSelfReferencingAlias(t *testing.T) {
	problems := parseProblems(t, "redis: &a {<<: *a}\n")
	if want := []string{"redis: alias *a refers to itself (line 1)"}; !slices.Equal(problems, want) {
		t.Errorf("problems = %q, want %q", problems, want)
	}
}

func TestDecodeProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("spaces:\n")
	for range 500 {
		b.WriteString("  - {kee: X}\n")
	}
	problems := parseProblems(t, b.String())
	if len(problems) != maxDecodeProblems+1 || problems[maxDecodeProblems] != "too many problems; stopped" {
		t.Errorf("got %d problems, last %q", len(problems), problems[len(problems)-1])
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:pw@host:6379", "redis://:REDACTED@host:6379"},
		{"rediss://user:pw@host:6380/1", "rediss://user:REDACTED@host:6380/1"},
		{"redis://user@host", "redis://user@host"},
		{"redis://host?master_name=m&password=pw", "redis://host?master_name=m&password=REDACTED"},
		{"redis://user:pw@host:%zz", "REDACTED"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
