package identify

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// ErrBadAddress is wrapped by every error Normalize returns.
var ErrBadAddress = errors.New("identify: not a usable address")

// idnaProfile converts domains the way resolvers do (UTS #46 mapping,
// non-transitional), so that a domain compares equal however it was written,
// while look-alike scripts stay distinct punycode labels.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(false),
)

// Normalize returns the form addresses are compared and stored in: local
// part in Unicode NFC and lower case, domain lower-cased in its ASCII
// (punycode) form. "+tag" is kept: it names a different mailbox.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	a = strings.TrimPrefix(a, "<")
	a = strings.TrimSuffix(a, ">")
	if a == "" {
		return "", fmt.Errorf("%w: empty", ErrBadAddress)
	}
	if len(a) > 512 {
		return "", fmt.Errorf("%w: too long", ErrBadAddress)
	}
	if !utf8.ValidString(a) {
		return "", fmt.Errorf("%w: invalid UTF-8", ErrBadAddress)
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", fmt.Errorf("%w: %q has no local part or domain", ErrBadAddress, a)
	}
	local, domain := a[:at], a[at+1:]
	local, err := normalizeLocal(local)
	if err != nil {
		return "", err
	}
	domain, err = NormalizeDomain(domain)
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

func normalizeLocal(local string) (string, error) {
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		// A quoted local part whose content needs no quoting names the same
		// mailbox as the unquoted form (RFC 5321 §4.1.2).
		inner := local[1 : len(local)-1]
		if isDotAtom(inner) {
			local = inner
		}
	}
	for _, r := range local {
		if unicode.IsControl(r) || unicode.IsSpace(r) && local[0] != '"' {
			return "", fmt.Errorf("%w: control or space character in local part", ErrBadAddress)
		}
	}
	if len(local) > 64*4 {
		return "", fmt.Errorf("%w: local part too long", ErrBadAddress)
	}
	return strings.ToLower(norm.NFC.String(local)), nil
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r < 0x80 && !isAtext(byte(r)) && r != '.' {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// NormalizeDomain returns a domain lower-cased in its ASCII form.
func NormalizeDomain(domain string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if d == "" {
		return "", fmt.Errorf("%w: empty domain", ErrBadAddress)
	}
	if d[0] == '[' {
		// An address literal is a valid mailbox but names no domain a
		// policy can speak of; keep it as written so it matches nothing.
		return strings.ToLower(d), nil
	}
	ascii, err := idnaProfile.ToASCII(norm.NFC.String(d))
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %v", ErrBadAddress, d, err)
	}
	ascii = strings.ToLower(ascii)
	for i := 0; i < len(ascii); i++ {
		c := ascii[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("%w: domain %q", ErrBadAddress, d)
		}
	}
	return ascii, nil
}

// Domain returns the domain of a normalized address.
func Domain(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// WithoutTag strips a "+tag" from the local part of a normalized address;
// support addresses are matched this way so "it+urgent@" reaches "it@".
func WithoutTag(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local := addr[:at]
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	return local + addr[at:]
}
