// Package mailaddr normalizes mail addresses so that two spellings of one
// mailbox compare equal and two mailboxes never do: local part in Unicode
// NFC and lower case (RFC 6531 allows UTF-8 there), domain in its
// lower-case ASCII form (IDNA 2008 with the UTS #46 lookup mapping, RFC
// 5890), quoted local parts that need no quoting unquoted (RFC 5321
// §4.1.2). Config, the directory and the policy all compare through it.
package mailaddr

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// ErrBadAddress is wrapped by every error of this package.
var ErrBadAddress = errors.New("mailaddr: not a usable address")

// idnaProfile converts domains the way resolvers do (UTS #46 mapping,
// non-transitional), so a domain compares equal however it was written,
// while look-alike letters of other scripts stay distinct punycode labels.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
)

// Normalize returns the form addresses are compared and stored in. It takes
// an address as found in a header or envelope, optionally in angle
// brackets. "+tag" is kept: it names a different mailbox.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = a[1 : len(a)-1]
	}
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
	local, err := normalizeLocal(a[:at])
	if err != nil {
		return "", err
	}
	domain, err := NormalizeDomain(a[at+1:])
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

func normalizeLocal(local string) (string, error) {
	// The checks below run on the normalized form, the one that is compared
	// and stored: NFC turns some non-ASCII code points into ASCII ones
	// (U+037E GREEK QUESTION MARK becomes ';'), so a check of the input
	// would let a character through in a disguise it then drops. NFC
	// before and after lower-casing: lower-casing can leave a letter that
	// composes with the mark after it.
	local = norm.NFC.String(strings.ToLower(norm.NFC.String(local)))
	quoted := len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"'
	if quoted && isDotAtom(local[1:len(local)-1]) {
		local, quoted = local[1:len(local)-1], false
	}
	if len(local) > 256 {
		return "", fmt.Errorf("%w: local part too long", ErrBadAddress)
	}
	for _, r := range local {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("%w: control character in local part", ErrBadAddress)
		}
		if !quoted && unicode.IsSpace(r) {
			return "", fmt.Errorf("%w: space in local part", ErrBadAddress)
		}
		// Outside quotes, only atext and dots (RFC 5322 §3.2.3) and UTF-8:
		// anything else (a second @, spaces, brackets) means the string
		// is not one address.
		if !quoted && r < utf8.RuneSelf && r != '.' && !isAtext(byte(r)) {
			return "", fmt.Errorf("%w: %q in local part", ErrBadAddress, r)
		}
	}
	return local, nil
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r < utf8.RuneSelf && r != '.' && !isAtext(byte(r)) {
			return false
		}
		if unicode.IsControl(r) || unicode.IsSpace(r) {
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

// NormalizeDomain returns a domain lower-cased in its ASCII form. A final
// root dot is dropped; address literals ([192.0.2.1], [IPv6:...]) are kept
// lower-cased, so they match no domain rule.
func NormalizeDomain(domain string) (string, error) {
	d := strings.TrimSpace(domain)
	if d == "" {
		return "", fmt.Errorf("%w: empty domain", ErrBadAddress)
	}
	if d[0] == '[' {
		ip := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(d[1:], "]")), "ipv6:")
		if !strings.HasSuffix(d, "]") || net.ParseIP(ip) == nil {
			return "", fmt.Errorf("%w: address literal %q", ErrBadAddress, d)
		}
		return strings.ToLower(d), nil
	}
	ascii, err := idnaProfile.ToASCII(norm.NFC.String(d))
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %v", ErrBadAddress, d, err)
	}
	// After the root dot, every label must be 1 to 63 octets and the name
	// at most 253 (RFC 1035 §2.3.4); an all-numeric last label is an IP
	// address written without brackets, not a domain.
	ascii = strings.ToLower(strings.TrimSuffix(ascii, "."))
	if ascii == "" || len(ascii) > 253 {
		return "", fmt.Errorf("%w: domain %q", ErrBadAddress, d)
	}
	labels := strings.Split(ascii, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%w: domain %q", ErrBadAddress, d)
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return "", fmt.Errorf("%w: domain %q is numeric", ErrBadAddress, d)
	}
	return ascii, nil
}

// Domain returns the domain of a normalized address.
func Domain(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// WithoutTag strips a "+tag" from the local part of a normalized address;
// support addresses are matched this way so "it+urgent@" reaches "it@".
// Quoted local parts are left whole.
func WithoutTag(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || addr[0] == '"' {
		return addr
	}
	local := addr[:at]
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	return local + addr[at:]
}
