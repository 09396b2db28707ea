package identify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/text/unicode/norm"

	"mailgw/config"
	"mailgw/identify/mailaddr"
	"mailgw/parse"
)

// Verdict is what mailgw could establish about who sent a message
// (DESIGN §3). Only Pass authenticates the From domain.
type Verdict struct {
	Result string // VerdictPass, VerdictFail or VerdictNone
	// Source says where the verdict came from: "authres:<authserv-id>",
	// "dkim" (mailgw's own check) or "" when there was nothing to go on.
	Source string
	Detail string // e.g. "dmarc=pass header.from=example.com"
}

// Verdict results.
const (
	VerdictPass = "pass"
	VerdictFail = "fail"
	VerdictNone = "none"
)

// String is the verdict as recorded in the stream entry's auth field.
func (v Verdict) String() string {
	s := v.Result
	if v.Source != "" {
		s += " (" + v.Source + ")"
	}
	if v.Detail != "" {
		s += ": " + v.Detail
	}
	return s
}

// Resolver looks up DNS TXT records; tests inject one so they run offline.
type Resolver func(ctx context.Context, name string) ([]string, error)

// Authenticator computes verdicts.
type Authenticator struct {
	trusted    map[string]bool
	verifyDKIM bool
	lookupTXT  Resolver
	timeout    time.Duration
}

// NewAuthenticator compiles the authentication settings; a nil resolver
// uses the system's.
func NewAuthenticator(a config.Authentication, lookup Resolver) *Authenticator {
	if lookup == nil {
		var r net.Resolver
		lookup = r.LookupTXT
	}
	au := &Authenticator{trusted: map[string]bool{}, verifyDKIM: a.VerifyDKIM, lookupTXT: lookup, timeout: 10 * time.Second}
	for _, id := range a.TrustedAuthservIDs {
		au.trusted[strings.ToLower(id)] = true
	}
	return au
}

// Verdict decides whether the From domain of msg is authenticated: by the
// topmost Authentication-Results header from a trusted authserv-id (every
// other one is ignored: anyone can write one), else by mailgw's own DKIM
// check when enabled, with DMARC alignment (RFC 7489 §3.1, relaxed unless
// the domain's record says strict).
func (a *Authenticator) Verdict(ctx context.Context, msg *parse.Message, raw []byte, from string) Verdict {
	fromDomain := mailaddr.Domain(from)
	for _, h := range msg.Header("Authentication-Results") {
		v := stripARComments(h)
		id := authservID(v)
		if !a.trusted[strings.ToLower(id)] {
			continue
		}
		// The topmost trusted header decides even when unreadable: the
		// ones below it may be forged.
		_, results, err := authres.Parse(v)
		if err != nil {
			return Verdict{Result: VerdictNone, Source: "authres:" + id, Detail: "unreadable Authentication-Results: " + err.Error()}
		}
		return fromAuthResults(id, results, fromDomain)
	}
	if !a.verifyDKIM {
		return Verdict{Result: VerdictNone, Detail: "no trusted Authentication-Results"}
	}
	return a.checkDKIM(ctx, raw, fromDomain)
}

// authservID returns the authserv-id of an Authentication-Results value
// (RFC 8601 §2.2), whether or not the results after it can be read.
func authservID(v string) string {
	first, _, _ := strings.Cut(v, ";")
	if f := strings.Fields(first); len(f) > 0 {
		return f[0]
	}
	return ""
}

// stripARComments removes RFC 5322 comments outside quoted strings, which
// authres.Parse does not understand (OpenDKIM writes "(2048-bit key; unprotected)").
func stripARComments(v string) string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			if c == '\\' && i+1 < len(v) {
				b.WriteByte(c)
				i++
				c = v[i]
			} else if c == '"' {
				quoted = false
			}
		case depth > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
			continue
		case c == '(':
			depth++
			b.WriteByte(' ')
			continue
		case c == '"':
			quoted = true
		}
		b.WriteByte(c)
	}
	return b.String()
}

func fromAuthResults(id string, results []authres.Result, fromDomain string) Verdict {
	src := "authres:" + id
	var dmarcFail, anyEvidence bool
	for _, r := range results {
		switch r := r.(type) {
		case *authres.DMARCResult:
			anyEvidence = true
			if hf, err := mailaddr.NormalizeDomain(r.From); r.From != "" && (err != nil || hf != fromDomain) {
				continue // about another From: not this message's
			}
			switch r.Value {
			case authres.ResultPass:
				return Verdict{Result: VerdictPass, Source: src, Detail: "dmarc=pass header.from=" + fromDomain}
			case authres.ResultFail:
				dmarcFail = true
			}
		}
	}
	if dmarcFail {
		return Verdict{Result: VerdictFail, Source: src, Detail: "dmarc=fail header.from=" + fromDomain}
	}
	for _, r := range results {
		switch r := r.(type) {
		case *authres.DKIMResult:
			anyEvidence = true
			if r.Value == authres.ResultPass && aligned(r.Domain, fromDomain, false) {
				return Verdict{Result: VerdictPass, Source: src, Detail: "dkim=pass header.d=" + r.Domain}
			}
		case *authres.SPFResult:
			anyEvidence = true
			if r.Value == authres.ResultPass && aligned(domainOfMailFrom(r.From), fromDomain, false) {
				return Verdict{Result: VerdictPass, Source: src, Detail: "spf=pass smtp.mailfrom=" + r.From}
			}
		}
	}
	if !anyEvidence {
		return Verdict{Result: VerdictNone, Source: src, Detail: "no dmarc, dkim or spf result"}
	}
	return Verdict{Result: VerdictFail, Source: src, Detail: "no aligned dkim or spf pass"}
}

func domainOfMailFrom(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// aligned compares an authenticated domain with the From domain: equal
// under strict alignment, same organizational domain under relaxed.
func aligned(authenticated, from string, strict bool) bool {
	a, err1 := mailaddr.NormalizeDomain(authenticated)
	f, err2 := mailaddr.NormalizeDomain(from)
	if err1 != nil || err2 != nil {
		return false
	}
	if a == f {
		return true
	}
	if strict {
		return false
	}
	oa, err1 := publicsuffix.EffectiveTLDPlusOne(a)
	of, err2 := publicsuffix.EffectiveTLDPlusOne(f)
	return err1 == nil && err2 == nil && oa == of
}

// maxSignatures bounds the DKIM work a message can cause.
const maxSignatures = 5

func (a *Authenticator) checkDKIM(ctx context.Context, raw []byte, fromDomain string) Verdict {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	lookup := func(name string) ([]string, error) { return a.lookupTXT(ctx, name) }
	opts := &dmarc.LookupOptions{LookupTXT: lookup}
	record, derr := dmarc.LookupWithOptions(fromDomain, opts)
	if errors.Is(derr, dmarc.ErrNoPolicy) {
		// RFC 7489 §6.6.3: fall back to the organizational domain's record.
		if org, err := publicsuffix.EffectiveTLDPlusOne(fromDomain); err == nil && org != fromDomain {
			record, derr = dmarc.LookupWithOptions(org, opts)
		}
	}
	strict := record != nil && record.DKIMAlignment == dmarc.AlignmentStrict
	verifications, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: maxSignatures})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return Verdict{Result: VerdictNone, Source: "dkim", Detail: "cannot read signatures: " + err.Error()}
	}
	var failures []string
	for _, v := range verifications {
		if v.Err == nil && aligned(v.Domain, fromDomain, strict) {
			return Verdict{Result: VerdictPass, Source: "dkim", Detail: "dkim=pass d=" + v.Domain}
		}
		if v.Err != nil {
			failures = append(failures, fmt.Sprintf("d=%s: %v", v.Domain, v.Err))
		} else {
			failures = append(failures, "d="+v.Domain+" not aligned")
		}
	}
	detail := "no valid aligned DKIM signature"
	if len(failures) > 0 {
		detail += " (" + strings.Join(failures, "; ") + ")"
	}
	switch {
	case record != nil:
		return Verdict{Result: VerdictFail, Source: "dkim", Detail: "dmarc policy " + string(record.Policy) + ", " + detail}
	case errors.Is(derr, dmarc.ErrNoPolicy) && len(verifications) > 0:
		return Verdict{Result: VerdictFail, Source: "dkim", Detail: detail}
	}
	return Verdict{Result: VerdictNone, Source: "dkim", Detail: detail}
}

// CanonicalFrom reports whether the From address was written in the form
// it normalizes to apart from case: an address spelled in decomposed
// Unicode (NFD) looks like a customer's but is not how their mail client
// writes it, so it is never trusted as theirs.
func CanonicalFrom(written string) bool {
	at := strings.LastIndexByte(written, '@')
	if at < 0 {
		return false
	}
	return norm.NFC.IsNormalString(written[:at])
}
