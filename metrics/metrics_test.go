package metrics

import (
	"bufio"
	"math"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func render(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	n, err := r.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != b.Len() {
		t.Errorf("WriteTo reported %d bytes, wrote %d", n, b.Len())
	}
	checkFormat(t, b.String())
	return b.String()
}

func TestWriteTo(t *testing.T) {
	r := NewRegistry()
	decisions := r.CounterVec("mailgw_decisions_total", "Decisions by channel and outcome.", "channel", "outcome")
	open := r.GaugeVec("mailgw_open", "Open things.", "kind")
	r.GaugeFunc("mailgw_answer", "The answer.", func() float64 { return 42 })

	decisions.Inc("smtp", "queued")
	decisions.Inc("smtp", "queued")
	decisions.Add(3, "imap", "rejected")
	decisions.Add(0, "replay", "ignored") // adds no series
	open.Set(1.5, "b")
	open.Set(-2, "a")

	want := `# HELP mailgw_answer The answer.
# TYPE mailgw_answer gauge
mailgw_answer 42
# HELP mailgw_decisions_total Decisions by channel and outcome.
# TYPE mailgw_decisions_total counter
mailgw_decisions_total{channel="imap",outcome="rejected"} 3
mailgw_decisions_total{channel="smtp",outcome="queued"} 2
# HELP mailgw_open Open things.
# TYPE mailgw_open gauge
mailgw_open{kind="a"} -2
mailgw_open{kind="b"} 1.5
`
	if got := render(t, r); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEscaping(t *testing.T) {
	r := NewRegistry()
	c := r.CounterVec("odd_total", "Help with a \\ backslash\nand a newline.", "v")
	for _, v := range []string{`quote"d`, `back\slash`, "new\nline", "bad\xffutf8", "", "ünïcode"} {
		c.Inc(v)
	}
	got := render(t, r)
	for _, want := range []string{
		`# HELP odd_total Help with a \\ backslash\nand a newline.`,
		`odd_total{v="quote\"d"} 1`,
		`odd_total{v="back\\slash"} 1`,
		`odd_total{v="new\nline"} 1`,
		"odd_total{v=\"bad\uFFFDutf8\"} 1",
		`odd_total{v=""} 1`,
		`odd_total{v="ünïcode"} 1`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing line %q in\n%s", want, got)
		}
	}
}

func TestSpecialValues(t *testing.T) {
	r := NewRegistry()
	g := r.GaugeVec("g", "Special values.", "v")
	g.Set(math.Inf(1), "inf")
	g.Set(math.Inf(-1), "minf")
	g.Set(math.NaN(), "nan")
	g.Set(1e21, "big")
	got := render(t, r)
	for _, want := range []string{`g{v="inf"} +Inf`, `g{v="minf"} -Inf`, `g{v="nan"} NaN`, `g{v="big"} 1e+21`} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing line %q in\n%s", want, got)
		}
	}
}

func TestNilIsInert(t *testing.T) {
	var r *Registry
	c := r.CounterVec("a_total", "A.", "x")
	g := r.GaugeVec("b", "B.", "x")
	r.GaugeFunc("c", "C.", func() float64 { return 1 })
	r.CounterFunc("d_total", "D.", func() float64 { return 1 })
	RegisterProcess(r)
	if c != nil || g != nil {
		t.Fatal("a nil registry handed out families")
	}
	c.Inc("x")
	c.Add(2, "x")
	g.Set(1, "x")
}

func TestRegisterTwice(t *testing.T) {
	r := NewRegistry()
	a := r.CounterVec("a_total", "A.", "x")
	if b := r.CounterVec("a_total", "A.", "x"); a != b {
		t.Fatal("a second registration of the same family made a new one")
	}
	a.Inc("1")
	r.CounterVec("a_total", "A.", "x").Inc("1")
	if got := render(t, r); !strings.Contains(got, `a_total{x="1"} 2`) {
		t.Errorf("both handles should count on one series:\n%s", got)
	}
	for name, register := range map[string]func(){
		"other labels": func() { r.CounterVec("a_total", "A.", "y") },
		"other kind":   func() { r.GaugeVec("a_total", "A.", "x") },
		"func kind":    func() { r.GaugeFunc("f", "F.", nil); r.CounterFunc("f", "F.", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			register()
		})
	}
}

func TestWrongLabelCount(t *testing.T) {
	c := NewRegistry().CounterVec("a_total", "A.", "x", "y")
	defer func() {
		if recover() == nil {
			t.Error("no panic for one label value where two are declared")
		}
	}()
	c.Inc("only one")
}

func TestConcurrentCounting(t *testing.T) {
	r := NewRegistry()
	c := r.CounterVec("n_total", "N.", "worker")
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				c.Inc("all")
				c.Inc(strconv.Itoa(w % 2))
			}
		})
	}
	// Scrapes while counting must see well-formed output.
	for range 20 {
		render(t, r)
	}
	wg.Wait()
	got := render(t, r)
	for _, want := range []string{`n_total{worker="all"} 8000`, `n_total{worker="0"} 4000`, `n_total{worker="1"} 4000`} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestProcessMetrics(t *testing.T) {
	r := NewRegistry()
	RegisterProcess(r)
	values := map[string]float64{}
	for line := range strings.Lines(render(t, r)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		values[name] = f
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memory_total_bytes", "process_resident_memory_bytes", "process_start_time_seconds"} {
		if !(values[name] > 0) {
			t.Errorf("%s = %v, want > 0", name, values[name])
		}
	}
	if v, ok := values["process_cpu_seconds_total"]; !ok || v < 0 {
		t.Errorf("process_cpu_seconds_total = %v, %v", v, ok)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.CounterVec("a_total", "A.", "x").Inc("1")
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(rec.Body.String(), `a_total{x="1"} 1`) {
		t.Errorf("body:\n%s", rec.Body.String())
	}
}

// The text format's grammar, strict enough that a scraper would take
// every line: comments are HELP or TYPE of the family that follows, and a
// sample is a valid name, optional labels with escaped values, and a float.
var (
	metricName  = `[a-zA-Z_:][a-zA-Z0-9_:]*`
	labelValue  = `"(?:[^"\\\n]|\\[\\"n])*"`
	labelPair   = `[a-zA-Z_][a-zA-Z0-9_]*=` + labelValue
	sampleLine  = regexp.MustCompile(`^(` + metricName + `)(\{` + labelPair + `(?:,` + labelPair + `)*\})? (\S+)$`)
	helpLine    = regexp.MustCompile(`^# HELP (` + metricName + `) (?:[^\\\n]|\\[\\n])*$`)
	typeLine    = regexp.MustCompile(`^# TYPE (` + metricName + `) (counter|gauge|histogram|summary|untyped)$`)
	validFloats = map[string]bool{"+Inf": true, "-Inf": true, "NaN": true}
)

func checkFormat(t *testing.T, text string) {
	t.Helper()
	if text != "" && !strings.HasSuffix(text, "\n") {
		t.Errorf("output does not end in a newline")
	}
	seen := map[string]bool{}
	family := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if m := helpLine.FindStringSubmatch(line); m != nil {
			if seen[m[1]] {
				t.Errorf("family %s appears twice", m[1])
			}
			seen[m[1]], family = true, m[1]
			continue
		}
		if m := typeLine.FindStringSubmatch(line); m != nil {
			if m[1] != family {
				t.Errorf("TYPE for %s after HELP for %s", m[1], family)
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("not a valid line: %q", line)
			continue
		}
		if m[1] != family {
			t.Errorf("sample %s outside its family %s", m[1], family)
		}
		if _, err := strconv.ParseFloat(m[3], 64); err != nil && !validFloats[m[3]] {
			t.Errorf("bad value in %q", line)
		}
	}
}
