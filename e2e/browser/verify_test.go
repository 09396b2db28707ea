package browser_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
)

const (
	testTimeout = 60 * time.Second // bound on each test, browser included
	support     = "it@example.com"
	spaceKey    = "IT"
	spaceName   = "IT help"
	// logConfirmed is in the log line of every POST that confirms.
	logConfirmed = `"message":"address confirmed"`
)

// TestVerifyLinkInBrowser follows an unknown sender from the held mail to
// the confirmed address: the link from the verification mail opens a page
// that changes nothing, its Confirm button queues the held request once,
// and posting again (reload, a stale tab) queues nothing more.
func TestVerifyLinkInBrowser(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	rs := redistest.Real(t)
	rdb := rs.Client(t)
	smarthost := startSink(t)
	gw := startGateway(t, gwOptions{RedisURL: rs.URL, Smarthost: smarthost.Addr, VerifyTTL: "48h"})
	tab := startBrowser(t, ctx)
	docs := recordDocumentRequests(t, tab)

	const sender, subject = "newbie@example.com", "Laptop will not start"
	reply := send(t, gw.SMTPAddr, sender, support,
		message("New Person <"+sender+">", "IT help <"+support+">", "browser-1@client.example.com", subject, "It beeps three times."))
	if !strings.Contains(reply, "held") {
		t.Fatalf("reply to DATA is %q, want the message held", reply)
	}
	if got := customerStatus(t, rdb, sender); got != "pending" {
		t.Fatalf("customer %s has status %q after the held mail, want pending", sender, got)
	}

	// The mail, through the smarthost.
	raw := smarthost.waitFor(t, sender)
	vm := parseVerification(t, raw.Data, gw.PublicURL)
	for name, want := range map[string]string{
		"Auto-Submitted":           "auto-generated",
		"X-Auto-Response-Suppress": "All",
		"X-Mailgw-Loop":            hostname,
	} {
		if got := vm.Header.Get(name); got != want {
			t.Errorf("verification mail %s: %q, want %q", name, got, want)
		}
	}
	if from := vm.Header.Get("From"); !strings.Contains(from, "support@example.com") {
		t.Errorf("verification mail From: %q, want outbound.from", from)
	}
	if id := vm.Header.Get("Message-ID"); !regexp.MustCompile(`^<mailgw\.[0-9a-f]+@` + regexp.QuoteMeta(hostname) + `>$`).MatchString(id) {
		t.Errorf("verification mail Message-ID %q is not mailgw's own", id)
	}
	for _, want := range []string{subject, spaceName} {
		if !strings.Contains(vm.Text, want) {
			t.Errorf("text of the verification mail does not mention %q:\n%s", want, vm.Text)
		}
	}
	if !strings.Contains(vm.HTML, `href="`+vm.Link+`"`) {
		t.Errorf("HTML part of the verification mail does not link to %s:\n%s", vm.Link, vm.HTML)
	}
	token := vm.Link[strings.LastIndexByte(vm.Link, '/')+1:]

	// Opening the link shows the address and the space, with a Confirm
	// button, and changes nothing.
	p := openPage(t, tab, chromedp.Navigate(vm.Link))
	p.expect(t, http.StatusOK, "Confirm your email address", "Confirm your email address", sender, spaceName)
	if label := p.confirmButton(t, tab); label != "Confirm" {
		t.Errorf("confirm button says %q, want Confirm", label)
	}
	screenshot(t, tab, "verify-confirm.png")
	// A second tab opens the link too and stays on the confirm page, as a
	// mail client's preview or a forgotten tab would.
	stale, cancelStale := chromedp.NewContext(tab)
	defer cancelStale()
	// The first action on a context opens its tab and ties the tab's life
	// to the context it is given: this one, not openPage's bounded one.
	if err := chromedp.Do(stale); err != nil {
		t.Fatalf("browser: open a second tab: %v", err)
	}
	openPage(t, stale, chromedp.Navigate(vm.Link)).expect(t, http.StatusOK, "Confirm your email address", "", sender)

	if got := customerStatus(t, rdb, sender); got != "pending" {
		t.Errorf("customer %s has status %q after GET, want pending: opening the link must change nothing", sender, got)
	}
	if n := len(streamEntries(t, rdb, spaceKey)); n != 0 {
		t.Errorf("%s stream has %d entries after GET, want 0: opening the link must change nothing", spaceKey, n)
	}
	if used := tokenUsed(t, rdb, token); used {
		t.Error("token is marked used after GET, want unused: opening the link must change nothing")
	}
	if n := gw.countLogLines(logConfirmed); n != 0 {
		t.Errorf("%d confirmations logged after GET, want 0", n)
	}

	// Confirm.
	p = openPage(t, tab, chromedp.Click(chromedp.ID("confirm")))
	p.expect(t, http.StatusOK, "Address confirmed", "Thank you", "The address "+sender+" is confirmed.",
		"Your request has been opened in "+spaceName+".")
	screenshot(t, tab, "verify-confirmed.png")
	if last := docs.last(); last != "POST "+vm.Link {
		t.Errorf("the Confirm button sent %q, want POST %s", last, vm.Link)
	}
	entries := streamEntries(t, rdb, spaceKey)
	if len(entries) != 1 {
		t.Fatalf("%s stream has %d entries after Confirm, want 1", spaceKey, len(entries))
	}
	for name, want := range map[string]string{"from": sender, "new_customer": "true", "subject": subject, "kind": "request"} {
		if got := field(entries[0], name); got != want {
			t.Errorf("stream entry %s = %q, want %q", name, got, want)
		}
	}
	if got := customerStatus(t, rdb, sender); got != "active" {
		t.Errorf("customer %s has status %q after Confirm, want active", sender, got)
	}
	if !tokenUsed(t, rdb, token) {
		t.Error("token is not marked used after Confirm")
	}

	// Reloading the page the POST returned posts again: still confirmed,
	// nothing queued twice, and the page does not claim a new request.
	p = openPage(t, tab, chromedp.Reload())
	p.expect(t, http.StatusOK, "Address confirmed", "Thank you", "The address "+sender+" is confirmed.")
	if strings.Contains(p.Text, "has been opened") {
		t.Errorf("a repeated POST says a request was opened:\n%s", p.Text)
	}
	if last := docs.last(); last != "POST "+vm.Link {
		t.Errorf("reload sent %q, want POST %s again", last, vm.Link)
	}
	if n := gw.countLogLines(logConfirmed); n != 2 {
		t.Errorf("%d confirmations logged after the reload, want 2 (the reload posts again)", n)
	}

	// Back: the link's page is fetched again and now says confirmed, with
	// no button.
	p = openPage(t, tab, chromedp.NavigateBack())
	p.expect(t, http.StatusOK, "Address confirmed", "Thank you", "The address "+sender+" is confirmed.")
	if last := docs.last(); last != "GET "+vm.Link {
		t.Errorf("back sent %q, want GET %s", last, vm.Link)
	}
	if p.hasConfirmButton(t, tab) {
		t.Error("the page of a used link still has a Confirm button")
	}

	// The stale tab's Confirm button posts once more.
	p = openPage(t, stale, chromedp.Click(chromedp.ID("confirm")))
	p.expect(t, http.StatusOK, "Address confirmed", "Thank you", "The address "+sender+" is confirmed.")
	if strings.Contains(p.Text, "has been opened") {
		t.Errorf("a repeated POST says a request was opened:\n%s", p.Text)
	}
	if n := gw.countLogLines(logConfirmed); n != 3 {
		t.Errorf("%d confirmations logged after the stale tab's Confirm, want 3", n)
	}

	if n := len(streamEntries(t, rdb, spaceKey)); n != 1 {
		t.Errorf("%s stream has %d entries after confirming three times, want exactly 1", spaceKey, n)
	}
	if got := customerStatus(t, rdb, sender); got != "active" {
		t.Errorf("customer %s has status %q at the end, want active", sender, got)
	}
}

// TestExpiredAndUnknownLinks checks the pages of links that cannot be
// used: one whose verify.ttl has passed says so with 410 Gone, before and
// after the expiry sweep dropped the held mail; one mailgw never made says
// it is not recognised with 404.
func TestExpiredAndUnknownLinks(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	rs := redistest.Real(t)
	rdb := rs.Client(t)
	smarthost := startSink(t)
	gw := startGateway(t, gwOptions{RedisURL: rs.URL, Smarthost: smarthost.Addr, VerifyTTL: "1s"})
	tab := startBrowser(t, ctx)

	// Unknown links, well formed and not.
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{
		gw.PublicURL + "/verify/" + base64.RawURLEncoding.EncodeToString(raw[:]),
		gw.PublicURL + "/verify/not-a-token",
	} {
		p := openPage(t, tab, chromedp.Navigate(link))
		p.expect(t, http.StatusNotFound, "Link not recognised", "We do not recognise this link")
		if link == gw.PublicURL+"/verify/not-a-token" {
			continue
		}
		screenshot(t, tab, "verify-unknown.png")
		if status, body := httpGet(t, link); status != http.StatusNotFound || !strings.Contains(body, "We do not recognise this link") {
			t.Errorf("GET %s: %d, want 404 with the unknown-link page:\n%s", link, status, body)
		}
		if status, body := httpDo(t, http.MethodPost, link); status != http.StatusNotFound || !strings.Contains(body, "We do not recognise this link") {
			t.Errorf("POST %s: %d, want 404 with the unknown-link page:\n%s", link, status, body)
		}
	}

	// An expired link.
	const sender = "late@example.com"
	reply := send(t, gw.SMTPAddr, sender, support,
		message("Late Person <"+sender+">", support, "browser-2@client.example.com", "Printer jammed", "Tray 2."))
	if !strings.Contains(reply, "held") {
		t.Fatalf("reply to DATA is %q, want the message held", reply)
	}
	vm := parseVerification(t, smarthost.waitFor(t, sender).Data, gw.PublicURL)

	// verify.ttl is 1s: the link is past it within about 2 s of the mail.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := httpGet(t, vm.Link)
		if status == http.StatusGone {
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, want 200 and then 410 once verify.ttl (1s) has passed", vm.Link, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := openPage(t, tab, chromedp.Navigate(vm.Link))
	p.expect(t, http.StatusGone, "Link expired", "This link has expired", "write to us again")
	if p.hasConfirmButton(t, tab) {
		t.Error("the page of an expired link has a Confirm button")
	}
	screenshot(t, tab, "verify-expired.png")
	if status, body := httpDo(t, http.MethodPost, vm.Link); status != http.StatusGone || !strings.Contains(body, "This link has expired") {
		t.Errorf("POST %s: %d, want 410 with the expired-link page:\n%s", vm.Link, status, body)
	}

	// The sweep drops the held mail and the pending account; the link
	// still says expired, not unknown.
	deadline = time.Now().Add(10 * time.Second)
	for customerStatus(t, rdb, sender) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("pending account of %s still there 10 s after verify.ttl passed, want it removed by the sweep", sender)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := gw.countLogLines(`"verification_expired"`, sender); n != 1 {
		t.Errorf("%d verification_expired log lines for %s, want 1", n, sender)
	}
	if status, body := httpGet(t, vm.Link); status != http.StatusGone || !strings.Contains(body, "This link has expired") {
		t.Errorf("GET %s after the sweep: %d, want 410 with the expired-link page:\n%s", vm.Link, status, body)
	}
	if status, _ := httpDo(t, http.MethodPost, vm.Link); status != http.StatusGone {
		t.Errorf("POST %s after the sweep: %d, want 410", vm.Link, status)
	}
	if n := len(streamEntries(t, rdb, spaceKey)); n != 0 {
		t.Errorf("%s stream has %d entries, want 0: an expired link queues nothing", spaceKey, n)
	}
	if got := customerStatus(t, rdb, sender); got != "" {
		t.Errorf("customer %s has status %q after POSTs to the expired link, want no account", sender, got)
	}
}

// ---- pages ----

// pageView is what a navigation in the browser led to.
type pageView struct {
	Status int64
	URL    string
	Title  string
	H1     string
	Text   string // the text of <main>
}

// openPage runs an action that navigates (Navigate, a click on a submit
// button, Reload, Back), waits for the page to load and reads it.
func openPage(t *testing.T, tab context.Context, nav chromedp.Action[chromedp.Void]) pageView {
	t.Helper()
	nctx, cancel := context.WithTimeout(tab, navTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(nctx, nav)
	if err != nil {
		t.Fatalf("browser: no page loaded within %v: %v", navTimeout, err)
	}
	p := pageView{Status: resp.Status, URL: resp.URL}
	if p.Title, err = chromedp.Run(tab, chromedp.Title()); err != nil {
		t.Fatalf("browser: title: %v", err)
	}
	if p.H1, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("h1"))); err != nil {
		t.Fatalf("browser: <h1> of %s: %v", p.URL, err)
	}
	if p.Text, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("main"))); err != nil {
		t.Fatalf("browser: <main> of %s: %v", p.URL, err)
	}
	return p
}

// expect checks the status, the title, the heading and that the text
// holds each of texts; an empty heading is not checked.
func (p pageView) expect(t *testing.T, status int64, title, h1 string, texts ...string) {
	t.Helper()
	if p.Status != status {
		t.Errorf("%s: HTTP status %d, want %d", p.URL, p.Status, status)
	}
	if p.Title != title {
		t.Errorf("%s: title %q, want %q", p.URL, p.Title, title)
	}
	if h1 != "" && strings.TrimSpace(p.H1) != h1 {
		t.Errorf("%s: heading %q, want %q", p.URL, p.H1, h1)
	}
	for _, s := range texts {
		if !strings.Contains(p.Text, s) {
			t.Errorf("%s: page does not say %q; it says:\n%s", p.URL, s, p.Text)
		}
	}
}

func (p pageView) hasConfirmButton(t *testing.T, tab context.Context) bool {
	t.Helper()
	found, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("confirm") !== null`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return found
}

// confirmButton returns the label of the visible Confirm button, a submit
// button of a form that posts to the page's own URL.
func (p pageView) confirmButton(t *testing.T, tab context.Context) string {
	t.Helper()
	type button struct {
		Label, Type, Method, Action string
	}
	b, err := chromedp.Run(tab, chromedp.Evaluate[button](`(() => {
		const b = document.getElementById("confirm");
		return {Label: b.textContent.trim(), Type: b.type, Method: b.form.method, Action: b.form.action};
	})()`))
	if err != nil {
		t.Fatalf("browser: Confirm button: %v", err)
	}
	if b.Type != "submit" || b.Method != "post" || b.Action != p.URL {
		t.Errorf("Confirm button is a %q button of a %q form to %q, want a submit button posting to %s", b.Type, b.Method, b.Action, p.URL)
	}
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.ID("confirm"))); err != nil {
		t.Fatalf("browser: Confirm button not visible: %v", err)
	}
	return b.Label
}

// documentRequests records the method and URL of every page the tab
// requests, in order.
type documentRequests struct {
	mu   sync.Mutex
	reqs []string
}

func recordDocumentRequests(t *testing.T, tab context.Context) *documentRequests {
	t.Helper()
	d := &documentRequests{}
	err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Type == network.ResourceTypeDocument {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.reqs = append(d.reqs, e.Request.Method+" "+e.Request.URL)
		}
	})
	if err != nil {
		t.Fatalf("browser: listen: %v", err)
	}
	return d
}

func (d *documentRequests) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reqs) == 0 {
		return ""
	}
	return d.reqs[len(d.reqs)-1]
}

// ---- Redis ----

const prefix = "mailgw:" // redis.prefix's default

func rctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// customerStatus returns the status of addr's account, "" if it has none.
func customerStatus(t testing.TB, rdb *redis.Client, addr string) string {
	t.Helper()
	m, err := rdb.HGetAll(rctx(t), prefix+"customer:"+addr).Result()
	if err != nil {
		t.Fatalf("HGETALL customer %s: %v", addr, err)
	}
	return m["status"]
}

func streamEntries(t testing.TB, rdb *redis.Client, space string) []redis.XMessage {
	t.Helper()
	key := prefix + "{" + space + "}:requests"
	msgs, err := rdb.XRange(rctx(t), key, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", key, err)
	}
	return msgs
}

func field(m redis.XMessage, name string) string {
	v, _ := m.Values[name].(string)
	return v
}

// tokenUsed reads the record Redis keeps for a token, under its SHA-256.
func tokenUsed(t testing.TB, rdb *redis.Client, token string) bool {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	key := prefix + "token:" + hex.EncodeToString(sum[:])
	b, err := rdb.Get(rctx(t), key).Bytes()
	if errors.Is(err, redis.Nil) {
		t.Fatalf("no record for the token at %s", key)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	var rec struct {
		Used bool `json:"used"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("token record %s: %v", b, err)
	}
	return rec.Used
}
