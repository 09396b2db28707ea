package imap

import (
	"bufio"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgw/metrics"
)

// scrapeIMAP renders reg as GET /metrics would and returns each sample
// line's value by its name and labels, exactly as written, and each
// family's TYPE.
func scrapeIMAP(t testing.TB, reg *metrics.Registry) (samples map[string]float64, types map[string]string) {
	t.Helper()
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	samples, types = map[string]float64{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(rest, " ")
			types[name] = kind
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		// Label values here are mailbox names and booleans, without
		// spaces, so the value is what follows the last space.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("sample line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples, types
}

// imapSeries names the poller's series of the rig's mailbox.
const (
	seriesConnected     = `mailgw_imap_connected{mailbox="support"}`
	seriesCaughtUp      = `mailgw_imap_caught_up_timestamp_seconds{mailbox="support"}`
	seriesSessionErrors = `mailgw_imap_session_errors_total{mailbox="support"}`
	seriesFailures      = `mailgw_imap_message_failures_total{mailbox="support",poison="false"}`
	seriesPoison        = `mailgw_imap_message_failures_total{mailbox="support",poison="true"}`
)

// TestMetricsConnected follows one session through the gauges: connected
// is 0 before Run (so an alert has a series to fire on), 1 while the
// session is selected and 0 once Run returned; the caught-up time is set
// once the backlog is drained and is the wall clock of that moment.
func TestMetricsConnected(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	reg := metrics.NewRegistry()
	r.opt.Metrics = reg
	var want []string
	for _, id := range []string{"m1@example.com", "m2@example.com", "m3@example.com"} {
		r.srv.add(t, "INBOX", mail(id))
		want = append(want, id+"+seen")
	}
	p := r.poller(&fakeHandler{})

	got, types := scrapeIMAP(t, reg)
	if v, ok := got[seriesConnected]; !ok || v != 0 {
		t.Errorf("before Run: %s = %v (present %v), want 0", seriesConnected, v, ok)
	}
	if _, ok := got[seriesCaughtUp]; ok {
		t.Errorf("before Run: %s present, want it absent until a drain finished", seriesCaughtUp)
	}
	for name, kind := range map[string]string{
		"mailgw_imap_connected":                   "gauge",
		"mailgw_imap_caught_up_timestamp_seconds": "gauge",
		"mailgw_imap_session_errors_total":        "counter",
		"mailgw_imap_message_failures_total":      "counter",
	} {
		if types[name] != kind {
			t.Errorf("# TYPE %s is %q, want %q", name, types[name], kind)
		}
	}

	// The gauge holds whole seconds, so the bound is the second the test
	// started in.
	startUnix := float64(time.Now().Unix())
	run := start(t, p)
	waitFor(t, "three messages settled", func() bool { return slices.Equal(r.srv.ids(t, "INBOX"), want) })
	waitFor(t, "the caught-up time", func() bool {
		s, _ := scrapeIMAP(t, reg)
		_, ok := s[seriesCaughtUp]
		return ok
	})
	got, _ = scrapeIMAP(t, reg)
	nowUnix := float64(time.Now().Unix())
	if v := got[seriesConnected]; v != 1 {
		t.Errorf("while the session is selected: %s = %v, want 1", seriesConnected, v)
	}
	if v := got[seriesCaughtUp]; v < startUnix || v > nowUnix {
		t.Errorf("%s = %v, want a Unix time between %v and %v", seriesCaughtUp, v, startUnix, nowUnix)
	}
	if v, ok := got[seriesSessionErrors]; ok {
		t.Errorf("%s = %v with a healthy server, want no series; log:\n%s", seriesSessionErrors, v, r.logs)
	}

	run.stop()
	got, _ = scrapeIMAP(t, reg)
	if v, ok := got[seriesConnected]; !ok || v != 0 {
		t.Errorf("after Run returned: %s = %v (present %v), want 0", seriesConnected, v, ok)
	}
	if v, ok := got[seriesSessionErrors]; ok {
		t.Errorf("after a stop: %s = %v, want no series: a stop is not a session error", seriesSessionErrors, v)
	}
}

// TestMetricsSessionErrors: a server that goes away ends the session,
// which is counted, and connected drops to 0 while the poller cannot
// reconnect; once the server is back connected returns to 1.
func TestMetricsSessionErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	reg := metrics.NewRegistry()
	r.opt.Metrics = reg
	start(t, r.poller(&fakeHandler{}))
	value := func(series string) float64 { s, _ := scrapeIMAP(t, reg); return s[series] }

	waitFor(t, "the first session", func() bool { return value(seriesConnected) == 1 })
	r.srv.stop()
	// Every attempt to reconnect fails at dial while the server is down,
	// so connected stays 0 and the count only grows.
	waitFor(t, "a counted session error with connected 0", func() bool {
		s, _ := scrapeIMAP(t, reg)
		return s[seriesSessionErrors] >= 1 && s[seriesConnected] == 0
	})
	n := value(seriesSessionErrors)

	r.srv.restart()
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	waitFor(t, "m1 after the server came back", func() bool {
		return slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen"})
	})
	waitFor(t, "connected again", func() bool { return value(seriesConnected) == 1 })
	if got := value(seriesSessionErrors); got < n {
		t.Errorf("%s went down from %v to %v", seriesSessionErrors, n, got)
	}
	if got := len(r.logged("warn", "session ended")); float64(got) != value(seriesSessionErrors) {
		t.Errorf("%d sessions logged as ended, %s = %v: want one count per log line", got, seriesSessionErrors, value(seriesSessionErrors))
	}
}

// TestMetricsPoison: with max_failures 2, a message whose handling
// panics twice is counted once as a plain failure and once as poison.
func TestMetricsPoison(t *testing.T) {
	t.Parallel()
	r := newRig(t, capsMove)
	reg := metrics.NewRegistry()
	r.opt.Metrics = reg
	r.srv.add(t, "INBOX", mail("m1@example.com"))
	r.srv.add(t, "INBOX", mail("poison@example.com", "X-Want: panic"))
	r.srv.add(t, "INBOX", mail("m2@example.com"))
	start(t, r.poller(&fakeHandler{}))

	waitFor(t, "poison moved aside", func() bool {
		return slices.Equal(r.srv.ids(t, "Rejected"), []string{"poison@example.com"}) &&
			slices.Equal(r.srv.ids(t, "INBOX"), []string{"m1@example.com+seen", "m2@example.com+seen"})
	})
	r.quiet()
	got, _ := scrapeIMAP(t, reg)
	if v := got[seriesFailures]; v != 1 {
		t.Errorf("%s = %v, want 1 (the first panic)", seriesFailures, v)
	}
	if v := got[seriesPoison]; v != 1 {
		t.Errorf("%s = %v, want 1 (the second panic made it poison)", seriesPoison, v)
	}
}
