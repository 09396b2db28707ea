package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailgw/identify/mailaddr"
	"mailgw/route"
)

// DecisionLog is the decision log as the admin pages read it.
type DecisionLog interface {
	LastLog(ctx context.Context, n int64, match func(route.Entry) bool) ([]route.Entry, string, error)
}

// Bounds of one look-up: a page is for reading, and the log is capped anyway.
const (
	defaultLogRows = 50
	maxLogRows     = 1000
)

// admin lets a request through only with the admin token, as a bearer
// token (scripts) or as the password of HTTP Basic authentication (a
// browser, which then asks for it). The pages only read, so a browser
// that sends the Basic credentials on its own cannot be made to change
// anything.
func (s *Server) admin(next http.HandlerFunc) http.Handler {
	want := sha256.Sum256([]byte(s.opt.AdminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var given string
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			given = strings.TrimSpace(tok)
		} else if _, pw, ok := r.BasicAuth(); ok {
			given = pw
		}
		// Comparing digests keeps the comparison constant-time whatever
		// the length of what was sent.
		got := sha256.Sum256([]byte(given))
		if given == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			if given != "" {
				s.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("admin request with a wrong token refused")
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="mailgw admin", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next(w, r)
	})
}

// logQuery is a decision-log look-up as given in a URL query.
type logQuery struct {
	filter route.LogFilter
	rows   int64
}

func parseLogQuery(q url.Values) (logQuery, string) {
	lq := logQuery{
		filter: route.LogFilter{
			Space:     strings.TrimSpace(q.Get("space")),
			Reason:    strings.TrimSpace(q.Get("reason")),
			Outcome:   strings.TrimSpace(q.Get("outcome")),
			MessageID: route.BareMessageID(q.Get("message_id")),
		},
		rows: defaultLogRows,
	}
	if from := strings.TrimSpace(q.Get("from")); from != "" {
		n, err := mailaddr.Normalize(from)
		if err != nil {
			return lq, "from: not an email address"
		}
		lq.filter.From = n
	}
	if v := q.Get("n"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > maxLogRows {
			return lq, "n: must be a number from 1 to " + strconv.Itoa(maxLogRows)
		}
		lq.rows = n
	}
	return lq, ""
}

// newestFirst reads the log for lq, newest entry first.
func (s *Server) newestFirst(ctx context.Context, lq logQuery) ([]route.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	entries, _, err := s.opt.DecisionLog.LastLog(ctx, lq.rows, lq.filter.Match)
	slices.Reverse(entries)
	return entries, err
}

// logAPI answers GET /api/log with {"entries": [...]}, newest first; each
// entry is what "mailgw log --json" prints.
func (s *Server) logAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	lq, problem := parseLogQuery(r.URL.Query())
	if problem != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": problem})
		return
	}
	entries, err := s.newestFirst(r.Context(), lq)
	if err != nil {
		s.log.Error().Err(err).Msg("decision log read")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "decision log unavailable, try again"})
		return
	}
	if entries == nil {
		entries = []route.Entry{}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"entries": entries})
}

type logPageData struct {
	Title   string
	Query   url.Values
	Rows    int64
	Entries []route.Entry
	Problem string
}

// Link returns the page's URL with one filter set to value, for the
// links from a row's sender and Message-ID.
func (d logPageData) Link(key, value string) string {
	return "?" + url.Values{key: {value}}.Encode()
}

// logPage answers GET /admin/log: a filter form and the newest matching
// decisions, for answering "why did this email not become a ticket?"
// from a browser.
func (s *Server) logPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lq, problem := parseLogQuery(q)
	d := logPageData{Title: "Decision log", Query: q, Rows: lq.rows, Problem: problem}
	status := http.StatusOK
	if problem != "" {
		status = http.StatusBadRequest
	} else {
		var err error
		if d.Entries, err = s.newestFirst(r.Context(), lq); err != nil {
			s.log.Error().Err(err).Msg("decision log read")
			status, d.Problem = http.StatusServiceUnavailable, "The decision log cannot be read right now (Redis unavailable); try again."
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "log.html", d); err != nil {
		s.log.Error().Err(err).Str("page", "log.html").Msg("render")
	}
}
