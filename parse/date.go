package parse

import (
	"errors"
	"net/mail"
	"strings"
	"time"
)

var errDate = errors.New("parse: unparsable date")

// Layouts seen in the wild that net/mail.ParseDate (RFC 5322 with its
// obsolete forms) does not take. Tried after weekday, comments and month
// names were normalized away.
var extraDateLayouts = []string{
	"2 Jan 2006 15:04:05 -07:00",
	"2 Jan 2006 15:04 -07:00",
	"2 Jan 2006 15:04:05 -0700 MST",
	"2 Jan 2006 15:04:05 MST -0700",
	"2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04",
	"2 Jan 2006 15.04.05 -0700",
	"2 Jan 2006 15.04.05",
	"Jan 2 15:04:05 2006",
	"Jan 2 15:04:05 MST 2006",
	"Jan 2 15:04:05 -0700 2006",
	"Jan 2 2006 15:04:05 -0700",
	"Jan 2, 2006 15:04:05 -0700",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05 -07:00",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"02.01.2006 15:04:05 -0700",
	"02.01.2006 15:04:05",
	"2/1/2006 15:04:05 -0700",
	"2-Jan-2006 15:04:05 -0700",
	"2-Jan-2006 15:04:05",
}

// Offsets of the zone names RFC 5322 §4.3 defines, and of a few more that
// mailers write; time.Parse would take them all as UTC.
var zoneOffsets = map[string]int{
	"UT": 0, "GMT": 0, "UTC": 0, "Z": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
	"CET": 1, "CEST": 2, "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "WET": 0, "WEST": 1,
	"BST": 1, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
}

var monthNames = strings.NewReplacer(
	"January", "Jan", "February", "Feb", "March", "Mar", "April", "Apr", "June", "Jun",
	"July", "Jul", "August", "Aug", "September", "Sep", "Sept", "Sep", "October", "Oct",
	"November", "Nov", "December", "Dec",
)

// parseDate parses a Date field leniently. On failure it returns the zero
// time and an error.
func parseDate(v string) (time.Time, error) {
	if len(v) > 200 {
		return time.Time{}, errDate
	}
	// Nearly all mail has this form; net/mail tries it only after dozens of
	// layouts, each failure costing allocations.
	fast := strings.TrimSpace(v)
	if i := strings.LastIndexByte(fast, '('); i > 0 && strings.HasSuffix(fast, ")") {
		fast = strings.TrimSpace(fast[:i])
	}
	for _, l := range [...]string{"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(l, fast); err == nil {
			return t, nil
		}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return fixZone(t), nil
	}
	s := normalizeDate(v)
	if t, err := mail.ParseDate(s); err == nil {
		return fixZone(t), nil
	}
	for _, l := range extraDateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return fixZone(t), nil
		}
	}
	return time.Time{}, errDate
}

// normalizeDate drops comments and the weekday, spells months short and
// collapses white space.
func normalizeDate(v string) string {
	v = stripAllComments(v)
	v = strings.ReplaceAll(v, ",", ", ")
	f := strings.Fields(v)
	if len(f) > 0 {
		w := strings.TrimSuffix(f[0], ",")
		if len(w) >= 3 && isWeekday(w) {
			f = f[1:]
		}
	}
	s := strings.Join(f, " ")
	s = strings.TrimSuffix(strings.TrimSpace(s), ",")
	s = strings.ReplaceAll(s, " , ", ", ")
	return monthNames.Replace(s)
}

func isWeekday(w string) bool {
	for _, d := range [...]string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		if strings.HasPrefix(d, strings.ToLower(w)) {
			return true
		}
	}
	return false
}

func stripAllComments(v string) string {
	if strings.IndexByte(v, '(') < 0 {
		return v
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// fixZone gives a named zone without a numeric offset its real offset.
func fixZone(t time.Time) time.Time {
	name, off := t.Zone()
	if off != 0 {
		return t
	}
	h, ok := zoneOffsets[strings.ToUpper(name)]
	if !ok || h == 0 {
		return t
	}
	y, mo, d := t.Date()
	hh, mm, ss := t.Clock()
	return time.Date(y, mo, d, hh, mm, ss, t.Nanosecond(), time.FixedZone(name, h*3600))
}
