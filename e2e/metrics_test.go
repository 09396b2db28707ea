package e2e_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgw/internal/proctest"
	"mailgw/internal/redistest"
)

// blockedSender is on the block list of the gateway TestMetrics starts.
// It is on an internal domain, where an unknown sender would be held for
// verification, so only the block list can refuse it.
const blockedSender = "mallory@example.com"

// metricsGateway is a gateway whose HTTP listener the test knows.
type metricsGateway struct {
	*gateway
	HTTP string // 127.0.0.1:PORT
}

// startMetricsGateway is startGateway with blockedSender blocked, and with
// the HTTP address kept: /metrics is served there.
func startMetricsGateway(t *testing.T, opts gwOptions) *metricsGateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, httpPort := proctest.MustFreePort(t), proctest.MustFreePort(t)
		cfg := writeConfig(t, port, httpPort, opts)
		// The shared template has no block list; adding one entry to its
		// access section keeps the rest of it as every other test has it.
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		withBlock := strings.Replace(string(b), "\naccess:\n", "\naccess:\n  blocked: ["+blockedSender+"]\n", 1)
		if withBlock == string(b) {
			t.Fatalf("config template has no access section to add a block list to:\n%s", b)
		}
		if err := os.WriteFile(cfg, []byte(withBlock), 0o644); err != nil {
			t.Fatal(err)
		}
		g := launch(t, "serve", "--config", cfg)
		g.Config = cfg
		g.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = g.waitReady(hostname)
		if err == nil {
			return &metricsGateway{gateway: g, HTTP: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))}
		}
		if g.proc.BindFailed() && attempt < bindAttempts {
			t.Logf("mailgw could not bind its ports, trying others")
			continue
		}
		t.Fatalf("mailgw on %s: %v", g.Addr, err)
	}
}

// promSample is one sample line of the text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is one GET /metrics: the samples, and the TYPE of each family.
type scrape struct {
	samples []promSample
	types   map[string]string
}

// getMetrics fetches and parses /metrics, failing the test unless it is a
// 200 in the Prometheus text format 0.0.4.
func getMetrics(t testing.TB, httpAddr string) scrape {
	t.Helper()
	client := &http.Client{Timeout: ioTimeout}
	resp, err := client.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: reading the body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, want 200; body:\n%s", resp.StatusCode, body)
	}
	if ct, want := resp.Header.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8"; ct != want {
		t.Errorf("GET /metrics: Content-Type %q, want %q", ct, want)
	}
	s, err := parseExposition(string(body))
	if err != nil {
		t.Fatalf("GET /metrics: %v; body:\n%s", err, body)
	}
	return s
}

// parseExposition reads the text format: comment lines, and samples of
// the form name{label="value",...} value, with \\, \" and \n escaped in
// label values.
func parseExposition(text string) (scrape, error) {
	s := scrape{types: map[string]string{}}
	for n, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(rest, " ")
			s.types[name] = kind
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		smp, err := parseSample(line)
		if err != nil {
			return s, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		s.samples = append(s.samples, smp)
	}
	return s, nil
}

func parseSample(line string) (promSample, error) {
	smp := promSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return smp, fmt.Errorf("no metric name")
	}
	smp.name, line = line[:i], line[i:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for !strings.HasPrefix(line, "}") {
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return smp, fmt.Errorf("label without a quoted value")
			}
			key := line[:eq]
			line = line[eq+2:]
			var v strings.Builder
			closed := false
			for len(line) > 0 && !closed {
				c := line[0]
				line = line[1:]
				switch {
				case c == '"':
					closed = true
				case c == '\\' && len(line) > 0:
					switch line[0] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(line[0])
					}
					line = line[1:]
				default:
					v.WriteByte(c)
				}
			}
			if !closed {
				return smp, fmt.Errorf("unterminated value of label %s", key)
			}
			smp.labels[key] = v.String()
			line = strings.TrimPrefix(line, ",")
		}
		line = line[1:]
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, " "), 64)
	if err != nil {
		return smp, err
	}
	smp.value = v
	return smp, nil
}

// find returns the samples of family name whose labels include want.
func (s scrape) find(name string, want map[string]string) []promSample {
	var out []promSample
	for _, smp := range s.samples {
		if smp.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if got, ok := smp.labels[k]; !ok || got != v {
				match = false
			}
		}
		if match {
			out = append(out, smp)
		}
	}
	return out
}

// sum adds the values of find's samples.
func (s scrape) sum(name string, want map[string]string) float64 {
	var total float64
	for _, smp := range s.find(name, want) {
		total += smp.value
	}
	return total
}

// decisionKey is a mailgw_decisions_total series, which is also how the
// decision log's entries are grouped to compare them with it.
type decisionKey struct{ channel, space, outcome, reason string }

func (k decisionKey) String() string {
	return fmt.Sprintf("{channel=%q,space=%q,outcome=%q,reason=%q}", k.channel, k.space, k.outcome, k.reason)
}

func (s scrape) decisionCounts() map[decisionKey]float64 {
	out := map[decisionKey]float64{}
	for _, smp := range s.find("mailgw_decisions_total", nil) {
		l := smp.labels
		out[decisionKey{l["channel"], l["space"], l["outcome"], l["reason"]}] += smp.value
	}
	return out
}

// TestMetrics sends a queued message, one refused at RCPT and one from a
// blocked sender through the real binary, then scrapes /metrics: the
// decisions, SMTP replies and connections are counted with the labels
// docs/policy.md gives them, the process and Redis pool gauges are there,
// and the decision counters agree, series by series, with the decision log
// stream (the metrics and the log must never tell two stories).
func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := redistest.Real(t)
	rdb := srv.Client(t)
	g := startMetricsGateway(t, gwOptions{RedisURL: srv.URL})

	out, code := swaks(t, g.gateway, "--from", "carol@example.com", "--to", "it@example.com",
		"--header", "Subject: Printer on fire",
		"--header", "Message-Id: <metrics-queued@client.example>",
		"--body", "The printer on floor 3 is on fire.")
	requireReply(t, "known customer", out, 0, code, "250 2.0.0 OK: queued as IT-1")
	out, code = swaks(t, g.gateway, "--from", "carol@example.com", "--to", "nobody@example.com")
	requireReply(t, "unknown recipient", out, 24, code, "550 5.1.1")
	out, code = swaks(t, g.gateway, "--from", blockedSender, "--to", "it@example.com",
		"--header", "Message-Id: <metrics-blocked@client.example>")
	requireReply(t, "blocked sender", out, 26, code, "550 5.7.1", "blocked_sender")

	want := map[decisionKey]float64{
		{"smtp", "IT", "queued", "accepted"}:         1,
		{"smtp", "", "rejected", "no_route"}:         1,
		{"smtp", "IT", "rejected", "blocked_sender"}: 1,
	}

	// serve appends to the log stream in the background (docs/redis.md),
	// so the stream may trail the counters for a moment.
	ctx := context.Background()
	var m scrape
	var logged map[decisionKey]float64
	var logLen int
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = getMetrics(t, g.HTTP)
		entries, err := rdb.XRange(ctx, "mailgw:log", "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE mailgw:log: %v", err)
		}
		logLen = len(entries)
		logged = map[decisionKey]float64{}
		for _, e := range entries {
			logged[decisionKey{field(e, "channel"), field(e, "space"), field(e, "outcome"), field(e, "reason")}]++
		}
		if maps.Equal(m.decisionCounts(), want) && maps.Equal(logged, want) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	if got := m.decisionCounts(); !maps.Equal(got, want) {
		t.Errorf("mailgw_decisions_total series %v, want %v", got, want)
	}
	if !maps.Equal(logged, m.decisionCounts()) {
		t.Errorf("decision log stream by channel, space, outcome and reason %v; mailgw_decisions_total %v: they must agree", logged, m.decisionCounts())
	}
	if total := m.sum("mailgw_decisions_total", nil); total != float64(logLen) {
		t.Errorf("mailgw_decisions_total adds up to %v, the decision log stream holds %d entries", total, logLen)
	}
	if n := m.sum("mailgw_decision_log_errors_total", nil); n != 0 {
		t.Errorf("mailgw_decision_log_errors_total = %v, want 0", n)
	}

	// Exactly the two refusals: accepted mail is not an error reply.
	if n := m.sum("mailgw_smtp_error_replies_total", map[string]string{"code": "550", "enhanced": "5.1.1"}); n != 1 {
		t.Errorf(`mailgw_smtp_error_replies_total{code="550",enhanced="5.1.1"} = %v, want 1`, n)
	}
	if n := m.sum("mailgw_smtp_error_replies_total", map[string]string{"code": "550", "enhanced": "5.7.1"}); n != 1 {
		t.Errorf(`mailgw_smtp_error_replies_total{code="550",enhanced="5.7.1"} = %v, want 1 (the blocked sender)`, n)
	}
	if n := m.sum("mailgw_smtp_error_replies_total", nil); n != 2 {
		t.Errorf("mailgw_smtp_error_replies_total adds up to %v, want 2: only the two refusals", n)
	}
	// Three swaks runs, and the readiness probe before them.
	if n := m.sum("mailgw_smtp_connections_total", map[string]string{"result": "accepted"}); n < 3 {
		t.Errorf(`mailgw_smtp_connections_total{result="accepted"} = %v, want at least 3`, n)
	}

	for name, kind := range map[string]string{
		"mailgw_decisions_total":          "counter",
		"mailgw_smtp_error_replies_total": "counter",
		"mailgw_smtp_connections_total":   "counter",
		"process_resident_memory_bytes":   "gauge",
		"go_goroutines":                   "gauge",
		"mailgw_redis_pool_connections":   "gauge",
	} {
		if got := m.types[name]; got != kind {
			t.Errorf("# TYPE %s is %q, want %q", name, got, kind)
		}
	}
	// Each has served the test's traffic, so none can be 0.
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines", "mailgw_redis_pool_connections"} {
		switch smp := m.find(name, nil); {
		case len(smp) != 1:
			t.Errorf("%s: %d samples, want 1", name, len(smp))
		case !(smp[0].value > 0):
			t.Errorf("%s = %v, want more than 0", name, smp[0].value)
		}
	}

	g.stop(t)
}
