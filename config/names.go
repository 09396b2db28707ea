package config

import (
	"errors"
	"net"
	"net/mail"
	"strconv"
	"strings"

	"mailgw/identify/mailaddr"
)

var (
	errNotAddress = errors.New("not an email address")
	errNotDomain  = errors.New("not a domain name")
)

// NormalizeDomain returns the form domains are compared in (see
// mailaddr.NormalizeDomain). Config names domains, never address literals.
func NormalizeDomain(s string) (string, error) {
	if strings.HasPrefix(s, "[") {
		return "", errNotDomain
	}
	d, err := mailaddr.NormalizeDomain(s)
	if err != nil {
		return "", errNotDomain
	}
	return d, nil
}

// NormalizeAddress checks that s is a bare address (local@domain, no
// display name, no angle brackets, no comments) and returns the form
// addresses are compared in (see mailaddr.Normalize).
func NormalizeAddress(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || strings.Count(s, "@") != 1 || strings.Contains(s, "[") {
		return "", errNotAddress
	}
	n, err := mailaddr.Normalize(s)
	if err != nil {
		return "", errNotAddress
	}
	return n, nil
}

// addressDomain returns the part of a normalized address after the @.
func addressDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// normalizeBlocked normalizes an access.blocked entry: an address, a
// domain, or "*.domain" for every subdomain of domain.
func normalizeBlocked(s string) (string, error) {
	if strings.HasPrefix(s, "*") && !strings.HasPrefix(s, "*.") {
		return "", errNotDomain // "*@domain" would be taken literally
	}
	if strings.Contains(s, "@") {
		return NormalizeAddress(s)
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		d, err := NormalizeDomain(rest)
		if err != nil {
			return "", err
		}
		return "*." + d, nil
	}
	return NormalizeDomain(s)
}

// checkHostPort reports whether s is host:port with a numeric port; a
// zero port (let the system choose) is accepted only when allowZero.
func checkHostPort(s string, allowZero bool) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZero) {
		return false
	}
	return true
}

// isLoopbackHost reports whether host names the local machine: localhost,
// 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isEnvName reports whether s can name an environment variable.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
