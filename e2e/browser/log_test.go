package browser_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"mailgw/internal/redistest"
)

// TestDecisionLogPageInBrowser answers "why did this email not become a
// ticket?" the way an operator would in a browser: with the token the page
// shows the decisions newest first, and its filter form and Message-ID
// links narrow them down.
func TestDecisionLogPageInBrowser(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	rs := redistest.Real(t)
	smarthost := startSink(t)
	gw := startGateway(t, gwOptions{RedisURL: rs.URL, Smarthost: smarthost.Addr, VerifyTTL: "48h"})
	tab := startBrowser(t, ctx)

	// Two unknown senders are held; the first confirms, which queues the
	// held request: three decisions, two about one message.
	const first, second = "newbie@example.com", "another@example.com"
	send(t, gw.SMTPAddr, first, support, message(first, support, "log-1@client.example.com", "Printer", "Jammed."))
	send(t, gw.SMTPAddr, second, support, message(second, support, "log-2@client.example.com", "Monitor", "Flickers."))
	vm := parseVerification(t, smarthost.waitFor(t, first).Data, gw.PublicURL)
	if status, body := httpDo(t, http.MethodPost, vm.Link); status != http.StatusOK {
		t.Fatalf("confirming %s: %d\n%s", vm.Link, status, body)
	}

	// Headless Chromium cannot show the login prompt a 401 asks for (it
	// fails the load instead), so the refusal is checked without it.
	logURL := gw.PublicURL + "/admin/log"
	if status, body := httpGet(t, logURL); status != http.StatusUnauthorized || strings.Contains(body, first) {
		t.Fatalf("without the token: status %d, want 401 and nothing of the log\n%s", status, body)
	}

	// A browser sends what the Basic login prompt would have.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+adminToken))
	if err := chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})); err != nil {
		t.Fatalf("browser: set the Authorization header: %v", err)
	}

	p := openLog(t, tab, chromedp.Navigate(logURL))
	p.expectRows(t, http.StatusOK,
		row{"queued", "accepted_new_customer", first, "log-1@client.example.com"},
		row{"held", "pending_verification", second, "log-2@client.example.com"},
		row{"held", "pending_verification", first, "log-1@client.example.com"},
	)
	screenshot(t, tab, "decision-log.png")

	// The filter form, as typed: a sender in another case still matches.
	if err := chromedp.Do(tab, chromedp.SetValue(chromedp.CSS(`input[name="from"]`), "NewBie@Example.COM")); err != nil {
		t.Fatalf("browser: fill in the sender: %v", err)
	}
	p = openLog(t, tab, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	if q := mustQuery(t, p.URL); q.Get("from") != "NewBie@Example.COM" {
		t.Errorf("the form went to %s, want the sender in the query", p.URL)
	}
	p.expectRows(t, http.StatusOK,
		row{"queued", "accepted_new_customer", first, "log-1@client.example.com"},
		row{"held", "pending_verification", first, "log-1@client.example.com"},
	)

	// A row's Message-ID links to every decision about that message.
	p = openLog(t, tab, chromedp.Click(chromedp.CSS(`#decisions tbody tr:first-child td:nth-child(8) a`)))
	if q := mustQuery(t, p.URL); q.Get("message_id") != "log-1@client.example.com" || q.Get("from") != "" {
		t.Errorf("the Message-ID link went to %s", p.URL)
	}
	p.expectRows(t, http.StatusOK,
		row{"queued", "accepted_new_customer", first, "log-1@client.example.com"},
		row{"held", "pending_verification", first, "log-1@client.example.com"},
	)

	// A bad filter says what is wrong.
	p = openLog(t, tab, chromedp.Navigate(logURL+"?n=0"))
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Problem, "n: must be a number") || len(p.Rows) != 0 {
		t.Errorf("n=0: status %d, problem %q, %d rows", p.Status, p.Problem, len(p.Rows))
	}
}

// row is what a test checks of one decision on the page.
type row struct{ Outcome, Reason, From, MessageID string }

// logView is the decision-log page as the browser shows it.
type logView struct {
	Status  int64
	URL     string
	Rows    []row
	Problem string
}

func openLog(t *testing.T, tab context.Context, nav chromedp.Action[chromedp.Void]) logView {
	t.Helper()
	nctx, cancel := context.WithTimeout(tab, navTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(nctx, nav)
	if err != nil {
		t.Fatalf("browser: no page loaded within %v: %v", navTimeout, err)
	}
	v := logView{Status: resp.Status, URL: resp.URL}
	type page struct {
		Rows    [][]string
		Problem string
	}
	got, err := chromedp.Run(tab, chromedp.Evaluate[page](`(() => {
		const rows = [...document.querySelectorAll("#decisions tbody tr")].map(tr => [...tr.cells].map(td => td.textContent.trim()));
		const p = document.getElementById("problem");
		return {Rows: rows, Problem: p ? p.textContent.trim() : ""};
	})()`))
	if err != nil {
		t.Fatalf("browser: read %s: %v", v.URL, err)
	}
	v.Problem = got.Problem
	for _, cells := range got.Rows {
		if len(cells) != 9 {
			t.Fatalf("%s: a row with %d cells: %q", v.URL, len(cells), cells)
		}
		v.Rows = append(v.Rows, row{Outcome: cells[2], Reason: cells[3], From: cells[6], MessageID: cells[7]})
	}
	return v
}

func (v logView) expectRows(t *testing.T, status int64, want ...row) {
	t.Helper()
	if v.Status != status {
		t.Errorf("%s: HTTP status %d, want %d", v.URL, v.Status, status)
	}
	if len(v.Rows) != len(want) {
		t.Fatalf("%s: %d rows %q, want %q", v.URL, len(v.Rows), v.Rows, want)
	}
	for i := range want {
		if v.Rows[i] != want[i] {
			t.Errorf("%s: row %d = %+v, want %+v", v.URL, i, v.Rows[i], want[i])
		}
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
