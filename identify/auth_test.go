package identify_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/identify/mailaddr"
	"mailgw/parse"
)

// authMessage is a plain message from `from` with the given header fields
// on top, in order (topmost first, as an MTA prepends them).
func authMessage(from string, top ...string) []byte {
	var b strings.Builder
	for _, h := range top {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("From: " + from + "\r\nTo: it@example.com\r\nSubject: Printer\r\n" +
		"Date: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <auth-test@client.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"The printer on floor 3 is jammed.\r\n")
	return []byte(b.String())
}

// verdictFor parses raw and asks a for the verdict of its single From.
func verdictFor(t *testing.T, a *identify.Authenticator, raw []byte) identify.Verdict {
	t.Helper()
	msg := parse.Parse(raw, parse.Options{})
	if msg.Problem != parse.ProblemNone || len(msg.From) != 1 {
		t.Fatalf("test message unusable: %s %s", msg.Problem, msg.ProblemWhy)
	}
	from, err := mailaddr.Normalize(msg.From[0].Address)
	if err != nil {
		t.Fatalf("From %q: %v", msg.From[0].Address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	return a.Verdict(ctx, msg, raw, from)
}

const testTimeout = 10 * time.Second

// noDNS is a resolver for tests that must not look anything up.
func noDNS(t *testing.T) identify.Resolver {
	return func(_ context.Context, name string) ([]string, error) {
		t.Errorf("unexpected DNS lookup of %s", name)
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

const ar = "Authentication-Results: "

// notPass stands for any verdict but pass where more than one is right.
const notPass = "not pass"

// TestAuthResults: only the topmost Authentication-Results of a trusted
// authserv-id counts, and it only authenticates the From domain when its
// DMARC result is about that domain or its DKIM or SPF pass is aligned.
func TestAuthResults(t *testing.T) {
	auth := identify.NewAuthenticator(config.Authentication{TrustedAuthservIDs: []string{"mx.example.com"}}, noDNS(t))
	// A header go-msgauth itself writes for an SPF pass of a quoted local
	// part: RFC 8601 values that are no tokens are quoted strings.
	quotedSPF := authres.Format("mx.example.com", []authres.Result{
		&authres.SPFResult{Value: authres.ResultPass, From: `"x;y"@evil.example`},
		&authres.DMARCResult{Value: authres.ResultFail, From: "example.com"},
	})
	tests := []struct {
		name   string
		from   string
		top    []string
		result string
		source string
	}{
		{"dmarc pass", "carol@example.com", []string{ar + "mx.example.com; dmarc=pass header.from=example.com"}, identify.VerdictPass, "authres:mx.example.com"},
		{"dmarc fail", "carol@example.com", []string{ar + "mx.example.com; dmarc=fail header.from=example.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"authserv-id compared without case", "carol@example.com", []string{ar + "MX.Example.COM; dmarc=pass header.from=example.com"}, identify.VerdictPass, "authres:MX.Example.COM"},
		{"version 1 after the authserv-id", "carol@example.com", []string{ar + "mx.example.com 1; dmarc=pass header.from=example.com"}, identify.VerdictPass, "authres:mx.example.com"},
		{"header.from compared without case", "Carol@EXAMPLE.com", []string{ar + "mx.example.com; dmarc=pass header.from=Example.COM"}, identify.VerdictPass, "authres:mx.example.com"},
		// An attacker writes a pass for the trusted id; the trusted MTA
		// prepends its own real result above it.
		{"forged pass below the trusted fail", "carol@example.com", []string{
			ar + "mx.example.com; dmarc=fail header.from=example.com",
			ar + "mx.example.com; dmarc=pass header.from=example.com",
		}, identify.VerdictFail, "authres:mx.example.com"},
		{"untrusted pass above the trusted fail", "carol@example.com", []string{
			ar + "relay.evil.example; dmarc=pass header.from=example.com",
			ar + "mx.example.com; dmarc=fail header.from=example.com",
		}, identify.VerdictFail, "authres:mx.example.com"},
		{"untrusted pass only", "carol@example.com", []string{ar + "mx.evil.example; dmarc=pass header.from=example.com"}, identify.VerdictNone, ""},
		{"untrusted id that extends a trusted one", "carol@example.com", []string{ar + "mx.example.com.evil.example; dmarc=pass header.from=example.com"}, identify.VerdictNone, ""},
		{"trusted pass for another From domain", "carol@example.com", []string{ar + "mx.example.com; dmarc=pass header.from=evil.example"}, identify.VerdictFail, "authres:mx.example.com"},
		{"trusted pass for a subdomain of the From domain", "carol@example.com", []string{ar + "mx.example.com; dmarc=pass header.from=mail.example.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dmarc fail beats an aligned dkim pass", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dkim pass aligned, same domain", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=example.com header.s=sel"}, identify.VerdictPass, "authres:mx.example.com"},
		{"dkim pass aligned relaxed, subdomain signer", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=mail.example.com header.s=sel"}, identify.VerdictPass, "authres:mx.example.com"},
		{"dkim pass aligned relaxed, subdomain From", "carol@support.example.com", []string{ar + "mx.example.com; dkim=pass header.d=example.com header.s=sel"}, identify.VerdictPass, "authres:mx.example.com"},
		{"dkim pass not aligned", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=evil.example header.s=sel"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dkim pass by a domain that ends in the From domain", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=notexample.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dkim pass by a domain that starts with the From domain", "carol@example.com", []string{ar + "mx.example.com; dkim=pass header.d=example.com.evil.example"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dkim pass of a sibling under a public suffix", "carol@a.co.uk", []string{ar + "mx.example.com; dkim=pass header.d=b.co.uk"}, identify.VerdictFail, "authres:mx.example.com"},
		{"dkim fail aligned", "carol@example.com", []string{ar + "mx.example.com; dkim=fail header.d=example.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"spf pass aligned", "carol@example.com", []string{ar + "mx.example.com; spf=pass smtp.mailfrom=bounces@mail.example.com"}, identify.VerdictPass, "authres:mx.example.com"},
		{"spf pass not aligned", "carol@example.com", []string{ar + "mx.example.com; spf=pass smtp.mailfrom=bounces@evil.example"}, identify.VerdictFail, "authres:mx.example.com"},
		{"spf pass without mailfrom", "carol@example.com", []string{ar + "mx.example.com; spf=pass"}, identify.VerdictFail, "authres:mx.example.com"},
		{"spf softfail aligned", "carol@example.com", []string{ar + "mx.example.com; spf=softfail smtp.mailfrom=carol@example.com"}, identify.VerdictFail, "authres:mx.example.com"},
		{"trusted header without results", "carol@example.com", []string{ar + "mx.example.com; none"}, identify.VerdictNone, "authres:mx.example.com"},
		{"only methods that say nothing about the From", "carol@example.com", []string{ar + "mx.example.com; iprev=pass policy.iprev=192.0.2.1"}, identify.VerdictNone, "authres:mx.example.com"},
		{"no Authentication-Results", "carol@example.com", nil, identify.VerdictNone, ""},
		{"malformed header alone", "carol@example.com", []string{ar + "this is not ; an = authres"}, identify.VerdictNone, ""},
		{"malformed header above the trusted fail", "carol@example.com", []string{
			ar + "garbage",
			ar + "mx.example.com; dmarc=fail header.from=example.com",
		}, identify.VerdictFail, "authres:mx.example.com"},
		{"empty header above the trusted pass", "carol@example.com", []string{
			ar,
			ar + "mx.example.com; dmarc=pass header.from=example.com",
		}, identify.VerdictPass, "authres:mx.example.com"},
		// The trusted MTA's own header is the topmost trusted one even when
		// go-msgauth cannot read all of it: an unreadable result must end
		// the search, or the attacker's forged header below it decides.
		// OpenDKIM writes "(2048-bit key; unprotected)" comments.
		{"unreadable trusted header above a forged pass", "carol@example.com", []string{
			ar + "mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=evil.example header.s=sel header.b=AbCd",
			ar + "mx.example.com; dmarc=pass header.from=example.com",
		}, notPass, "authres:mx.example.com"},
		// The attacker controls the envelope sender, so can make the
		// trusted header unreadable at will.
		{"quoted smtp.mailfrom in the trusted header above a forged pass", "carol@example.com", []string{
			ar + quotedSPF,
			ar + "mx.example.com; dmarc=pass header.from=example.com",
		}, notPass, "authres:mx.example.com"},
		// The same OpenDKIM header for an aligned signature is a pass.
		{"comment with a semicolon in a trusted dkim pass", "carol@example.com", []string{
			ar + "mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=example.com header.i=@example.com header.s=sel header.b=AbCd",
		}, identify.VerdictPass, "authres:mx.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verdictFor(t, auth, authMessage(tt.from, tt.top...))
			resultOK := v.Result == tt.result || tt.result == notPass && v.Result != identify.VerdictPass
			if !resultOK || v.Source != tt.source {
				t.Fatalf("verdict %q, want %s from %q", v, tt.result, tt.source)
			}
			if v.Result != identify.VerdictNone && v.Detail == "" {
				t.Errorf("verdict %q has no detail", v)
			}
		})
	}
}

// TestAuthResultsHeaderFromForms: header.from names the From domain however
// the MTA spelled it (U-label, trailing root dot), as alignment does for
// DKIM domains.
func TestAuthResultsHeaderFromForms(t *testing.T) {
	auth := identify.NewAuthenticator(config.Authentication{TrustedAuthservIDs: []string{"mx.example.com"}}, noDNS(t))
	for _, tt := range []struct{ from, headerFrom string }{
		{"jürgen@bücher.example", "bücher.example"},
		{"jürgen@bücher.example", "xn--bcher-kva.example"},
		{"carol@example.com", "example.com."},
	} {
		v := verdictFor(t, auth, authMessage(tt.from, ar+"mx.example.com; dmarc=pass header.from="+tt.headerFrom))
		if v.Result != identify.VerdictPass {
			t.Errorf("From %s, dmarc=pass header.from=%s: %q, want pass", tt.from, tt.headerFrom, v)
		}
	}
}

// TestAuthResultsNotTrustedWithoutIDs: with no trusted authserv-ids and no
// DKIM check, nothing authenticates a message, whatever it claims.
func TestAuthResultsNotTrustedWithoutIDs(t *testing.T) {
	auth := identify.NewAuthenticator(config.Authentication{}, noDNS(t))
	v := verdictFor(t, auth, authMessage("carol@example.com", ar+"mx.example.com; dmarc=pass header.from=example.com"))
	if v.Result != identify.VerdictNone || v.Source != "" {
		t.Fatalf("verdict %q, want none", v)
	}
}

func TestVerdictString(t *testing.T) {
	for _, tt := range []struct {
		v    identify.Verdict
		want string
	}{
		{identify.Verdict{Result: identify.VerdictPass, Source: "authres:mx.example.com", Detail: "dmarc=pass header.from=example.com"},
			"pass (authres:mx.example.com): dmarc=pass header.from=example.com"},
		{identify.Verdict{Result: identify.VerdictFail, Source: "dkim", Detail: "dmarc policy reject, no valid aligned DKIM signature"},
			"fail (dkim): dmarc policy reject, no valid aligned DKIM signature"},
		{identify.Verdict{Result: identify.VerdictNone, Detail: "no trusted Authentication-Results"}, "none: no trusted Authentication-Results"},
		{identify.Verdict{Result: identify.VerdictNone, Source: "dkim"}, "none (dkim)"},
		{identify.Verdict{Result: identify.VerdictNone}, "none"},
	} {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestCanonicalFrom(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"carol@example.com", true},
		{"Carol@EXAMPLE.com", true},
		{"jürgen@example.com", true},        // NFC, as mail clients write it
		{"ju\u0308rgen@example.com", false}, // NFD: looks the same, is not
		{"JU\u0308RGEN@example.com", false},
		{"carol", false},
		{"", false},
	} {
		if got := identify.CanonicalFrom(tt.addr); got != tt.want {
			t.Errorf("CanonicalFrom(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// dnsZone is an in-test resolver: TXT records by name, everything else
// NXDOMAIN. It counts the lookups of DKIM keys.
type dnsZone struct {
	mu         sync.Mutex
	txt        map[string][]string
	keyLookups int
}

func newZone() *dnsZone { return &dnsZone{txt: map[string][]string{}} }

func (z *dnsZone) set(name string, records ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[name] = records
}

func (z *dnsZone) lookup(_ context.Context, name string) ([]string, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if strings.Contains(name, "._domainkey.") {
		z.keyLookups++
	}
	if r, ok := z.txt[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return r, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (z *dnsZone) lookups() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.keyLookups
}

// dkimKey is a signing key with the TXT record that publishes it.
type dkimKey struct {
	signer crypto.Signer
	record string
}

func rsaKey(t testing.TB) dkimKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return dkimKey{k, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
}

func ed25519Key(t testing.TB) dkimKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return dkimKey{priv, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

// sign returns raw with a DKIM-Signature by domain and selector on top.
func sign(t testing.TB, raw []byte, domain, selector string, k dkimKey) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 k.signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return out.Bytes()
}

// TestOwnDKIM: with verify_dkim and no trusted authserv-ids, mailgw checks
// DKIM signatures itself against the injected resolver, with DMARC
// alignment.
func TestOwnDKIM(t *testing.T) {
	rsaK, edK, otherK := rsaKey(t), ed25519Key(t), rsaKey(t)
	// A fresh zone per case: example.com publishes both keys and, unless
	// the case says otherwise, a relaxed DMARC record.
	const relaxed = "v=DMARC1; p=reject"
	tests := []struct {
		name   string
		from   string
		dmarc  map[string]string // _dmarc records by domain; nil: example.com relaxed
		raw    func() []byte
		result string
	}{
		{"valid RSA signature", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "rsa", rsaK)
		}, identify.VerdictPass},
		{"valid Ed25519 signature", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "ed", edK)
		}, identify.VerdictPass},
		{"valid signature, no DMARC record", "carol@example.com", map[string]string{}, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "rsa", rsaK)
		}, identify.VerdictPass},
		{"relaxed alignment, subdomain signer", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "mail.example.com", "rsa", rsaK)
		}, identify.VerdictPass},
		{"body modified after signing", "carol@example.com", nil, func() []byte {
			raw := sign(t, authMessage("carol@example.com"), "example.com", "rsa", rsaK)
			return bytes.Replace(raw, []byte("floor 3"), []byte("floor 4"), 1)
		}, identify.VerdictFail},
		{"signed header modified after signing", "carol@example.com", nil, func() []byte {
			raw := sign(t, authMessage("carol@example.com"), "example.com", "rsa", rsaK)
			return bytes.Replace(raw, []byte("Subject: Printer"), []byte("Subject: Wire money"), 1)
		}, identify.VerdictFail},
		{"From replaced after signing", "carol@example.com", nil, func() []byte {
			raw := sign(t, authMessage("attacker@example.com"), "example.com", "rsa", rsaK)
			return bytes.Replace(raw, []byte("From: attacker@example.com"), []byte("From: carol@example.com"), 1)
		}, identify.VerdictFail},
		{"valid signature of another domain", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "attacker.example", "rsa", otherK)
		}, identify.VerdictFail},
		{"valid signature of another domain, no DMARC record", "carol@example.com", map[string]string{}, func() []byte {
			return sign(t, authMessage("carol@example.com"), "attacker.example", "rsa", otherK)
		}, identify.VerdictFail},
		{"key not published", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "missing", rsaK)
		}, identify.VerdictFail},
		{"key not published, no DMARC record", "carol@example.com", map[string]string{}, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "missing", rsaK)
		}, identify.VerdictFail},
		{"signed with another key than published", "carol@example.com", nil, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "rsa", otherK)
		}, identify.VerdictFail},
		{"unsigned, DMARC record", "carol@example.com", nil, func() []byte {
			return authMessage("carol@example.com")
		}, identify.VerdictFail},
		{"unsigned, no DMARC record", "carol@example.com", map[string]string{}, func() []byte {
			return authMessage("carol@example.com")
		}, identify.VerdictNone},
		{"strict alignment, subdomain signer", "carol@example.com", map[string]string{"example.com": "v=DMARC1; p=reject; adkim=s"}, func() []byte {
			return sign(t, authMessage("carol@example.com"), "mail.example.com", "rsa", rsaK)
		}, identify.VerdictFail},
		{"strict alignment, same domain", "carol@example.com", map[string]string{"example.com": "v=DMARC1; p=reject; adkim=s"}, func() []byte {
			return sign(t, authMessage("carol@example.com"), "example.com", "rsa", rsaK)
		}, identify.VerdictPass},
		// RFC 7489 §6.6.3: without a record at the From domain, the
		// organizational domain's record applies, adkim=s included.
		{"strict alignment from the organizational domain's record", "carol@support.example.com", map[string]string{"example.com": "v=DMARC1; p=reject; adkim=s"}, func() []byte {
			return sign(t, authMessage("carol@support.example.com"), "example.com", "rsa", rsaK)
		}, identify.VerdictFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := newZone()
			z.set("rsa._domainkey.example.com", rsaK.record)
			z.set("ed._domainkey.example.com", edK.record)
			z.set("rsa._domainkey.mail.example.com", rsaK.record)
			z.set("rsa._domainkey.attacker.example", otherK.record)
			z.set("_dmarc.attacker.example", relaxed)
			dm := tt.dmarc
			if dm == nil {
				dm = map[string]string{"example.com": relaxed}
			}
			for d, rec := range dm {
				z.set("_dmarc."+d, rec)
			}
			auth := identify.NewAuthenticator(config.Authentication{VerifyDKIM: true}, z.lookup)
			v := verdictFor(t, auth, tt.raw())
			if v.Result != tt.result {
				t.Fatalf("verdict %q, want %s", v, tt.result)
			}
			if v.Source != "dkim" {
				t.Errorf("source %q, want dkim", v.Source)
			}
		})
	}
}

// TestOwnDKIMTrustedResultsFirst: a trusted Authentication-Results decides
// before mailgw's own check, so a forged signature cannot overrule it.
func TestOwnDKIMTrustedResultsFirst(t *testing.T) {
	k := rsaKey(t)
	z := newZone()
	z.set("rsa._domainkey.example.com", k.record)
	auth := identify.NewAuthenticator(config.Authentication{TrustedAuthservIDs: []string{"mx.example.com"}, VerifyDKIM: true}, z.lookup)
	raw := sign(t, authMessage("carol@example.com"), "example.com", "rsa", k)
	raw = append([]byte(ar+"mx.example.com; dmarc=fail header.from=example.com\r\n"), raw...)
	if v := verdictFor(t, auth, raw); v.Result != identify.VerdictFail || v.Source != "authres:mx.example.com" {
		t.Fatalf("verdict %q, want the trusted fail", v)
	}
	if n := z.lookups(); n != 0 {
		t.Errorf("%d key lookups, want none", n)
	}
}

// TestOwnDKIMSignaturesBounded: a message with many signatures causes at
// most five key lookups and verifications; signatures past the fifth are
// not considered, even a valid one.
func TestOwnDKIMSignaturesBounded(t *testing.T) {
	good, bad := rsaKey(t), ed25519Key(t)
	z := newZone()
	z.set("_dmarc.example.com", "v=DMARC1; p=reject")
	z.set("good._domainkey.example.com", good.record)
	auth := identify.NewAuthenticator(config.Authentication{VerifyDKIM: true}, z.lookup)

	// dkim.Sign puts each new signature on top: the good one signed first
	// ends up last.
	raw := sign(t, authMessage("carol@example.com"), "example.com", "good", good)
	for i := range 20 {
		sel := "s" + string(rune('a'+i))
		z.set(sel+"._domainkey.example.com", good.record) // published key does not match
		raw = sign(t, raw, "example.com", sel, bad)
	}
	v := verdictFor(t, auth, raw)
	if v.Result == identify.VerdictPass {
		t.Errorf("valid 21st signature counted: %q", v)
	}
	if n := z.lookups(); n > 5 {
		t.Errorf("%d key lookups for 21 signatures, want at most 5", n)
	}

	// Within the first five, the valid one still counts.
	raw = sign(t, authMessage("carol@example.com"), "example.com", "good", good)
	for i := range 4 {
		raw = sign(t, raw, "example.com", "s"+string(rune('a'+i)), bad)
	}
	if v := verdictFor(t, auth, raw); v.Result != identify.VerdictPass {
		t.Errorf("valid 5th signature: %q, want pass", v)
	}
}
