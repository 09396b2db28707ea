package web_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"mailgw/internal/testkit"
	"mailgw/route"
	"mailgw/web"
)

const adminToken = "s3cret-admin-token-0123456789"

// adminSite is the decision log of one backend behind the admin handlers.
type adminSite struct {
	*site
	admin *httptest.Server
}

func newAdminSite(t *testing.T, b *testkit.Backend) *adminSite {
	t.Helper()
	s := newSite(t, b, nil)
	srv := httptest.NewServer(web.New(web.Options{Verifier: s.svc, AdminToken: adminToken, DecisionLog: s.store}, zerolog.Nop()).Handler())
	t.Cleanup(srv.Close)
	return &adminSite{site: s, admin: srv}
}

// logEntries writes the decisions every admin test reads, oldest first.
func (s *adminSite) logEntries() []route.Entry {
	s.t.Helper()
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	entries := []route.Entry{
		{Channel: "smtp", MessageID: "a1@example.com", From: "carol@example.com", Space: "IT", Outcome: "queued", Reason: "accepted", Request: "IT-1"},
		{Channel: "smtp", MessageID: "b2@partner.example", From: "frank@partner.example", Space: "BILL", Outcome: "rejected", Reason: "customer_disabled"},
		{Channel: "imap", MessageID: "c3@gmail.example", From: "stranger@gmail.example", Space: "IT", Outcome: "held", Reason: "pending_verification"},
		{Channel: "smtp", MessageID: `<script>alert("x")</script>@evil.example`, From: "carol@example.com", Space: "IT", Outcome: "ignored", Reason: "auto_reply", Detail: `<b>"Out of office"</b>`},
		{Channel: "smtp", MessageID: "e5@example.com", From: "", Space: "", Outcome: "rejected", Reason: "no_route"},
	}
	for i := range entries {
		entries[i].Time = base.Add(time.Duration(i) * time.Minute)
		if err := s.store.Log(s.ctx, entries[i]); err != nil {
			s.t.Fatal(err)
		}
	}
	return entries
}

type adminAuth = func(*http.Request)

func bearer(tok string) adminAuth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(user, pw string) adminAuth {
	return func(r *http.Request) { r.SetBasicAuth(user, pw) }
}

func (s *adminSite) get(path string, auth adminAuth) response {
	s.t.Helper()
	return s.request(s.admin, http.MethodGet, path, auth)
}

// apiLog reads /api/log with query and returns the message ids, newest first.
func (s *adminSite) apiLog(query string) (int, []string, string) {
	s.t.Helper()
	r := s.get("/api/log?"+query, bearer(adminToken))
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		s.t.Errorf("Content-Type %q", ct)
	}
	var body struct {
		Entries []route.Entry `json:"entries"`
		Error   string        `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		s.t.Fatalf("%s: %v\n%s", query, err, r.body)
	}
	var ids []string
	for _, e := range body.Entries {
		ids = append(ids, e.MessageID)
	}
	return r.status, ids, body.Error
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	testkit.EachBackend(t, testkit.RealOptions{}, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		s.logEntriesVia()
		for _, path := range []string{"/admin/log", "/api/log"} {
			req, _ := http.NewRequestWithContext(s.ctx, http.MethodGet, s.srv.URL+path, nil)
			req.Header.Set("Authorization", "Bearer ")
			resp, err := s.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s without an admin token configured: %d, want 404", path, resp.StatusCode)
			}
		}
	})
}

// logEntriesVia writes one decision, so a disabled page has something it
// could have leaked.
func (s *site) logEntriesVia() {
	s.t.Helper()
	if err := s.store.Log(s.ctx, route.Entry{Time: time.Now(), Channel: "smtp", MessageID: "x@example.com", From: "carol@example.com", Space: "IT", Outcome: "queued", Reason: "accepted"}); err != nil {
		s.t.Fatal(err)
	}
}

func TestAdminAuthentication(t *testing.T) {
	testkit.EachBackend(t, testkit.RealOptions{}, func(t *testing.T, b *testkit.Backend) {
		s := newAdminSite(t, b)
		s.logEntries()
		tests := []struct {
			name string
			auth adminAuth
			want int
		}{
			{"none", nil, http.StatusUnauthorized},
			{"empty bearer", bearer(""), http.StatusUnauthorized},
			{"wrong bearer", bearer("s3cret-admin-token-012345678"), http.StatusUnauthorized},
			{"longer bearer", bearer(adminToken + "0"), http.StatusUnauthorized},
			{"wrong basic password", basic("admin", "nope"), http.StatusUnauthorized},
			{"token as basic user name", basic(adminToken, ""), http.StatusUnauthorized},
			{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "Token "+adminToken) }, http.StatusUnauthorized},
			{"bearer", bearer(adminToken), http.StatusOK},
			{"basic, any user", basic("anyone", adminToken), http.StatusOK},
			{"basic, no user", func(r *http.Request) {
				r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(":"+adminToken)))
			}, http.StatusOK},
		}
		for _, path := range []string{"/admin/log", "/api/log"} {
			for _, tt := range tests {
				r := s.get(path, tt.auth)
				if r.status != tt.want {
					t.Errorf("%s, %s: %d, want %d", path, tt.name, r.status, tt.want)
				}
				if tt.want == http.StatusUnauthorized {
					if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
						t.Errorf("%s, %s: WWW-Authenticate %q", path, tt.name, got)
					}
					if strings.Contains(r.body, "carol@example.com") {
						t.Errorf("%s, %s: a refused request saw the log", path, tt.name)
					}
				}
			}
		}
		// The pages only read.
		req, _ := http.NewRequestWithContext(s.ctx, http.MethodPost, s.admin.URL+"/api/log", nil)
		bearer(adminToken)(req)
		resp, err := s.admin.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /api/log: %d, want 405", resp.StatusCode)
		}
	})
}

func TestAdminLogAPI(t *testing.T) {
	testkit.EachBackend(t, testkit.RealOptions{}, func(t *testing.T, b *testkit.Backend) {
		s := newAdminSite(t, b)
		entries := s.logEntries()
		xss := entries[3].MessageID
		tests := []struct {
			query string
			want  []string
		}{
			{"", []string{"e5@example.com", xss, "c3@gmail.example", "b2@partner.example", "a1@example.com"}},
			{"n=2", []string{"e5@example.com", xss}},
			{"from=Carol@EXAMPLE.com", []string{xss, "a1@example.com"}},
			{"from=" + url.QueryEscape("<carol@example.com>") + "&outcome=queued", []string{"a1@example.com"}},
			{"space=bill", []string{"b2@partner.example"}},
			{"reason=no_route", []string{"e5@example.com"}},
			{"outcome=rejected", []string{"e5@example.com", "b2@partner.example"}},
			{"message_id=" + url.QueryEscape("<c3@gmail.example>"), []string{"c3@gmail.example"}},
			{"outcome=rejected&n=1", []string{"e5@example.com"}},
			{"reason=nothing_like_this", nil},
		}
		for _, tt := range tests {
			status, got, problem := s.apiLog(tt.query)
			if status != http.StatusOK || problem != "" || strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("%q: %d %q %q, want %q", tt.query, status, got, problem, tt.want)
			}
		}
		r := s.get("/api/log?message_id=a1@example.com", bearer(adminToken))
		var body struct{ Entries []route.Entry }
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || len(body.Entries) != 1 {
			t.Fatalf("%v %s", err, r.body)
		}
		got, want := body.Entries[0], entries[0]
		if got.ID == "" || !got.Time.Equal(want.Time) || got.Channel != want.Channel || got.From != want.From ||
			got.Space != want.Space || got.Outcome != want.Outcome || got.Reason != want.Reason || got.Request != want.Request {
			t.Errorf("entry %+v, want %+v with a stream id", got, want)
		}
		if !strings.Contains(r.body, `"entries":[`) {
			t.Errorf("body %s", r.body)
		}
		if r := s.get("/api/log?reason=nothing_like_this", bearer(adminToken)); !strings.Contains(r.body, `"entries":[]`) {
			t.Errorf("no match should be an empty list, not null: %s", r.body)
		}
	})
}

func TestAdminBadQueries(t *testing.T) {
	testkit.EachBackend(t, testkit.RealOptions{}, func(t *testing.T, b *testkit.Backend) {
		s := newAdminSite(t, b)
		s.logEntries()
		for _, q := range []string{"n=0", "n=-1", "n=1001", "n=ten", "from=not-an-address", "from=" + url.QueryEscape("a@b@c.example")} {
			status, ids, problem := s.apiLog(q)
			if status != http.StatusBadRequest || problem == "" || ids != nil {
				t.Errorf("api %q: %d %q %q, want 400 with a problem", q, status, ids, problem)
			}
			page := s.get("/admin/log?"+q, bearer(adminToken))
			doc := parseHTML(t, page.body)
			if page.status != http.StatusBadRequest || byID(doc, "problem") == nil || byID(doc, "decisions") != nil {
				t.Errorf("page %q: %d, want 400 with the problem and no table", q, page.status)
			}
		}
	})
}

func TestAdminRedisDown(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newAdminSite(t, b)
		s.logEntries()
		msg, restore := fail(t, b)
		defer restore()
		status, ids, problem := s.apiLog("")
		if status != http.StatusServiceUnavailable || ids != nil || problem == "" {
			t.Errorf("api with Redis down: %d %q %q", status, ids, problem)
		}
		page := s.get("/admin/log", bearer(adminToken))
		if page.status != http.StatusServiceUnavailable || byID(parseHTML(t, page.body), "problem") == nil {
			t.Errorf("page with Redis down: %d\n%s", page.status, page.body)
		}
		for _, body := range []string{page.body, problem} {
			if strings.Contains(body, msg) || strings.Contains(body, "route:") {
				t.Errorf("internal error text reached the client: %s", body)
			}
		}
	})
}

func TestAdminLogPage(t *testing.T) {
	testkit.EachBackend(t, testkit.RealOptions{}, func(t *testing.T, b *testkit.Backend) {
		s := newAdminSite(t, b)
		entries := s.logEntries()
		page := s.get("/admin/log?from=carol@example.com", basic("ops", adminToken))
		if page.status != http.StatusOK || page.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("%d %q", page.status, page.header.Get("Content-Type"))
		}
		doc := parseHTML(t, page.body)
		rows := tableRows(byID(doc, "decisions"))
		if len(rows) != 2 {
			t.Fatalf("%d rows, want carol's 2:\n%s", len(rows), page.body)
		}
		// Newest first; hostile values are text, not markup.
		want := [][]string{
			{"2026-03-02 09:03:00", "smtp", "ignored", "auto_reply", "IT", "", "carol@example.com", entries[3].MessageID, `<b>"Out of office"</b>`},
			{"2026-03-02 09:00:00", "smtp", "queued", "accepted", "IT", "IT-1", "carol@example.com", "a1@example.com", ""},
		}
		for i, row := range rows {
			if strings.Join(row, "|") != strings.Join(want[i], "|") {
				t.Errorf("row %d = %q, want %q", i, row, want[i])
			}
		}
		if strings.Contains(page.body, "<script>") || strings.Contains(page.body, "<b>") {
			t.Error("a logged value reached the page unescaped")
		}
		// The form keeps the filter, and a row's sender links to its mail.
		if v := inputValue(doc, "from"); v != "carol@example.com" {
			t.Errorf("from input %q", v)
		}
		links := hrefs(byID(doc, "decisions"))
		if !contains(links, "?from=carol%40example.com") || !contains(links, "?message_id=a1%40example.com") {
			t.Errorf("links %q", links)
		}
		// Following the Message-ID link of the hostile entry finds it.
		var xssLink string
		for _, l := range links {
			if strings.HasPrefix(l, "?message_id=%3Cscript") {
				xssLink = l
			}
		}
		if xssLink == "" {
			t.Fatalf("no link to the hostile entry in %q", links)
		}
		page = s.get("/admin/log"+xssLink, bearer(adminToken))
		if rows := tableRows(byID(parseHTML(t, page.body), "decisions")); len(rows) != 1 || rows[0][7] != entries[3].MessageID {
			t.Errorf("following %s: %q", xssLink, rows)
		}
		page = s.get("/admin/log?reason=nothing_like_this", bearer(adminToken))
		if doc := parseHTML(t, page.body); byID(doc, "empty") == nil || byID(doc, "decisions") != nil {
			t.Errorf("no match should say so:\n%s", page.body)
		}
	})
}

func parseHTML(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func byID(n *html.Node, id string) *html.Node {
	if n == nil {
		return nil
	}
	if v, ok := hasAttr(n, "id"); ok && v == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if found := byID(c, id); found != nil {
			return found
		}
	}
	return nil
}

func walk(n *html.Node, f func(*html.Node)) {
	if n == nil {
		return
	}
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func tableRows(table *html.Node) [][]string {
	var rows [][]string
	walk(table, func(n *html.Node) {
		if n.DataAtom != atom.Tr || n.Parent == nil || n.Parent.DataAtom != atom.Tbody {
			return
		}
		var row []string
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.DataAtom == atom.Td {
				row = append(row, text(c))
			}
		}
		rows = append(rows, row)
	})
	return rows
}

func hrefs(n *html.Node) []string {
	var out []string
	walk(n, func(n *html.Node) {
		if v, ok := hasAttr(n, "href"); ok && n.DataAtom == atom.A {
			out = append(out, v)
		}
	})
	return out
}

func inputValue(doc *html.Node, name string) string {
	var v string
	walk(doc, func(n *html.Node) {
		if n.DataAtom == atom.Input {
			if got, _ := hasAttr(n, "name"); got == name {
				v, _ = hasAttr(n, "value")
			}
		}
	})
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
