package web_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"mailgw/identify"
	"mailgw/internal/testkit"
	"mailgw/web"
)

// confirmForm returns the page's one form, checking it posts to the page's
// own URL.
func confirmForm(t *testing.T, doc *html.Node, pageURL string) *html.Node {
	t.Helper()
	forms := findAll(doc, atom.Form)
	if len(forms) != 1 {
		t.Fatalf("%d forms on the confirm page, want 1", len(forms))
	}
	f := forms[0]
	if !strings.EqualFold(attr(f, "method"), "post") {
		t.Errorf("form method %q, want post", attr(f, "method"))
	}
	base, err := url.Parse(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	target := base
	if a, ok := hasAttr(f, "action"); ok {
		u, err := url.Parse(a)
		if err != nil {
			t.Fatalf("form action %q: %v", a, err)
		}
		target = base.ResolveReference(u)
	}
	if target.String() != base.String() {
		t.Errorf("form posts to %s, want the page's own URL %s", target, base)
	}
	if b := findAll(f, atom.Button); len(b) != 1 || (attr(b[0], "type") != "" && attr(b[0], "type") != "submit") {
		t.Errorf("form has no submit button")
	}
	return f
}

func hasAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// TestVerifyPages: GET shows the address and the spaces with a confirm
// form and changes nothing; POST confirms and queues once.
func TestVerifyPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		const dave = "dave@other.example"
		token := s.pending("Dave <"+dave+">", "m1@other.example", "it@example.com", "billing@example.com")

		before := dump(t, s.ctx, b.RDB)
		for range 2 {
			r := s.do(http.MethodGet, "/verify/"+token)
			if r.status != http.StatusOK {
				t.Fatalf("GET: %d\n%s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			doc := page(t, r.body)
			txt := text(doc)
			for _, want := range []string{dave, "IT help", "Billing & <Accounts>"} {
				if !strings.Contains(txt, want) {
					t.Errorf("confirm page does not show %q:\n%s", want, txt)
				}
			}
			if strings.Contains(r.body, "<Accounts>") {
				t.Errorf("space name not escaped:\n%s", r.body)
			}
			confirmForm(t, doc, r.url)
		}
		// HEAD, as link checkers send, changes nothing either.
		if r := s.do(http.MethodHead, "/verify/"+token); r.status != http.StatusOK {
			t.Fatalf("HEAD: %d", r.status)
		}
		if after := dump(t, s.ctx, b.RDB); after != before {
			t.Fatalf("GET changed Redis:\nbefore\n%s\nafter\n%s", before, after)
		}
		if st := s.status(dave); st != identify.StatusPending {
			t.Fatalf("status %q after GET, want pending", st)
		}

		r := s.do(http.MethodPost, "/verify/"+token)
		if r.status != http.StatusOK {
			t.Fatalf("POST: %d\n%s", r.status, r.body)
		}
		doc := page(t, r.body)
		if txt := text(doc); !strings.Contains(txt, "confirmed") || !strings.Contains(txt, dave) {
			t.Errorf("POST page does not say the address is confirmed:\n%s", txt)
		}
		if len(findAll(doc, atom.Form)) != 0 {
			t.Errorf("the confirmed page still has a form")
		}
		if s.stream("IT") != 1 || s.stream("BILL") != 1 {
			t.Fatalf("streams IT %d, BILL %d; want 1 each", s.stream("IT"), s.stream("BILL"))
		}
		if st := s.status(dave); st != identify.StatusActive {
			t.Fatalf("status %q after POST, want active", st)
		}

		again := dump(t, s.ctx, b.RDB)
		if r := s.do(http.MethodPost, "/verify/"+token); r.status != http.StatusOK || !strings.Contains(text(page(t, r.body)), "confirmed") {
			t.Fatalf("second POST: %d\n%s", r.status, r.body)
		}
		if after := dump(t, s.ctx, b.RDB); after != again {
			t.Fatalf("second POST changed Redis:\nbefore\n%s\nafter\n%s", again, after)
		}
		// The link now shows the confirmed page, without a form.
		r = s.do(http.MethodGet, "/verify/"+token)
		if r.status != http.StatusOK || len(findAll(page(t, r.body), atom.Form)) != 0 || !strings.Contains(r.body, "confirmed") {
			t.Fatalf("GET of a used link: %d\n%s", r.status, r.body)
		}
	})
}

// TestConcurrentPosts: many presses of the button at once queue once.
func TestConcurrentPosts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		token := s.pending("dave@other.example", "m1@other.example", "it@example.com")
		done := make(chan int)
		for range 10 {
			go func() {
				resp, err := s.srv.Client().Post(s.srv.URL+"/verify/"+token, "application/x-www-form-urlencoded", nil)
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
		}
		for range 10 {
			if code := <-done; code != http.StatusOK {
				t.Errorf("POST: %d", code)
			}
		}
		if n := s.stream("IT"); n != 1 {
			t.Fatalf("%d stream entries, want 1", n)
		}
	})
}

// TestTokenErrorPages: unknown links 404, expired ones 410, each with a
// page that says so and offers no form.
func TestTokenErrorPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		token := s.pending("dave@other.example", "m1@other.example", "it@example.com")

		var random [32]byte
		_, _ = rand.Read(random[:])
		for _, tok := range []string{base64.RawURLEncoding.EncodeToString(random[:]), "abc", token[:42], token + "x", strings.Repeat("A", 500)} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				r := s.do(method, "/verify/"+tok)
				if r.status != http.StatusNotFound {
					t.Errorf("%s unknown token %.10s…: %d, want 404", method, tok, r.status)
					continue
				}
				if doc := page(t, r.body); len(findAll(doc, atom.Form)) != 0 {
					t.Errorf("unknown-link page has a form")
				}
			}
		}

		s.clock.Add(s.cfg.Verify.TTL.D())
		before := dump(t, s.ctx, b.RDB)
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			r := s.do(method, "/verify/"+token)
			if r.status != http.StatusGone {
				t.Fatalf("%s expired link: %d, want 410", method, r.status)
			}
			doc := page(t, r.body)
			if !strings.Contains(strings.ToLower(text(doc)), "expired") || len(findAll(doc, atom.Form)) != 0 {
				t.Errorf("expired page:\n%s", r.body)
			}
		}
		if after := dump(t, s.ctx, b.RDB); after != before {
			t.Fatalf("an expired link changed Redis")
		}
		if n := s.stream("IT"); n != 0 {
			t.Fatalf("%d requests queued from an expired link", n)
		}
	})
}

// TestRedisFailurePage: a Redis failure is a 503 page that tells the
// person to try again and shows no internal error text.
func TestRedisFailurePage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		token := s.pending("dave@other.example", "m1@other.example", "it@example.com")
		msg, restore := fail(t, b)
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			r := s.do(method, "/verify/"+token)
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("%s with Redis failing: %d, want 503", method, r.status)
			}
			page(t, r.body)
			for _, leak := range []string{msg, "verify:", "redis", "LOADING", "127.0.0.1", "dial tcp"} {
				if strings.Contains(r.body, leak) {
					t.Errorf("%s: 503 page shows %q:\n%s", method, leak, r.body)
				}
			}
		}
		restore()
		if r := s.do(http.MethodPost, "/verify/"+token); r.status != http.StatusOK {
			t.Fatalf("POST after Redis is back: %d", r.status)
		}
		if n := s.stream("IT"); n != 1 {
			t.Fatalf("%d stream entries, want 1", n)
		}
	})
}

// TestHealth: /healthz is up while the process is; /readyz names each
// failing check without its error text.
func TestHealth(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		var smtpDown atomic.Bool
		checks := map[string]web.Check{
			"redis": func(ctx context.Context) error { return b.RDB.Ping(ctx).Err() },
			"smtp": func(context.Context) error {
				if smtpDown.Load() {
					return errors.New("listener closed: internal detail")
				}
				return nil
			},
		}
		s := newSite(t, b, checks)

		if r := s.do(http.MethodGet, "/healthz"); r.status != http.StatusOK {
			t.Fatalf("/healthz: %d", r.status)
		}
		r := s.do(http.MethodGet, "/readyz")
		if r.status != http.StatusOK || !strings.Contains(r.body, "redis: ok") || !strings.Contains(r.body, "smtp: ok") {
			t.Fatalf("/readyz: %d %q", r.status, r.body)
		}

		smtpDown.Store(true)
		r = s.do(http.MethodGet, "/readyz")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "smtp: not ready") || !strings.Contains(r.body, "redis: ok") {
			t.Fatalf("/readyz with smtp down: %d %q", r.status, r.body)
		}
		if strings.Contains(r.body, "internal detail") {
			t.Errorf("/readyz shows the check's error: %q", r.body)
		}
		smtpDown.Store(false)

		msg, restore := fail(t, b)
		r = s.do(http.MethodGet, "/readyz")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "redis: not ready") || strings.Contains(r.body, msg) {
			t.Fatalf("/readyz with Redis failing: %d %q", r.status, r.body)
		}
		if r := s.do(http.MethodGet, "/healthz"); r.status != http.StatusOK {
			t.Fatalf("/healthz with Redis failing: %d (liveness must not depend on Redis)", r.status)
		}
		restore()
		if r := s.do(http.MethodGet, "/readyz"); r.status != http.StatusOK {
			t.Fatalf("/readyz after Redis is back: %d %q", r.status, r.body)
		}
	})
}

// TestNoChecksReady: with no checks configured, /readyz is ready.
func TestNoChecksReady(t *testing.T) {
	srv := httptest.NewServer(web.New(web.Options{}, zerolog.Nop()).Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
}

// TestOtherPaths: everything else is 404 or 405 with the security headers.
func TestOtherPaths(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		for _, tt := range []struct {
			method, path string
			want         int
		}{
			{http.MethodGet, "/", http.StatusNotFound},
			{http.MethodGet, "/verify/", http.StatusNotFound},
			{http.MethodGet, "/verify/a/b", http.StatusNotFound},
			{http.MethodPut, "/verify/abc", http.StatusMethodNotAllowed},
			{http.MethodDelete, "/verify/abc", http.StatusMethodNotAllowed},
			{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
		} {
			if r := s.do(tt.method, tt.path); r.status != tt.want {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, r.status, tt.want)
			}
		}
	})
}

// TestConfirmFormBehindPathPrefix: http.public_url may carry a path
// (https://example.com/helpdesk) with a proxy that strips it; the form
// must post back to the URL the person opened, not to the site's root.
func TestConfirmFormBehindPathPrefix(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *testkit.Backend) {
		s := newSite(t, b, nil)
		token := s.pending("dave@other.example", "m1@other.example", "it@example.com")
		proxy := httptest.NewServer(http.StripPrefix("/helpdesk", web.New(web.Options{Verifier: s.svc}, zerolog.Nop()).Handler()))
		defer proxy.Close()
		pageURL := proxy.URL + "/helpdesk/verify/" + token
		resp, err := proxy.Client().Get(pageURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
		doc, err := html.Parse(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		confirmForm(t, doc, pageURL)
	})
}
