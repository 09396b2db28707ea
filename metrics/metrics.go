// Package metrics counts what mailgw does and writes the counts in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.
//
// Each package registers the families it owns on the Registry it is given
// and counts on them; a nil Registry hands out nil families, whose methods
// do nothing, so tests and one-shot commands need no wiring. Label values
// come from closed sets (channels, outcomes, reason codes, configured space
// keys and mailbox names), never from message content, so the number of
// series stays bounded whatever mail arrives.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds the metric families of one process.
type Registry struct {
	mu       sync.Mutex
	families map[string]family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: map[string]family{}}
}

type family interface {
	header() (name, help, kind string)
	samples(emit func(labels string, value float64))
}

// register returns the family already registered under name, or adds the
// one make builds. Registering one name twice with a different kind or
// labels is a programming error.
func register[F family](r *Registry, name, help string, labels []string, make func() F) F {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		same, ok := f.(F)
		if !ok || !slices.Equal(labelsOf(f), labels) {
			panic(fmt.Sprintf("metrics: %s registered twice with different kinds or labels", name))
		}
		return same
	}
	f := make()
	r.families[name] = f
	return f
}

func labelsOf(f family) []string {
	switch f := f.(type) {
	case *CounterVec:
		return f.labels
	case *GaugeVec:
		return f.labels
	}
	return nil
}

// vec is a set of series of one family, keyed by their label values.
type vec struct {
	name, help string
	labels     []string
	series     sync.Map // joined label values -> *series
	// gauge series hold float64 bits; counter series hold a count.
	gauge bool
}

type series struct {
	labels string // rendered {a="x",b="y"}
	v      atomic.Uint64
}

func (v *vec) get(values []string) *series {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values, got %d", v.name, len(v.labels), len(values)))
	}
	key := strings.Join(values, "\xff")
	if s, ok := v.series.Load(key); ok {
		return s.(*series)
	}
	s, _ := v.series.LoadOrStore(key, &series{labels: renderLabels(v.labels, values)})
	return s.(*series)
}

func (v *vec) samples(emit func(string, float64)) {
	var all []*series
	v.series.Range(func(_, s any) bool {
		all = append(all, s.(*series))
		return true
	})
	slices.SortFunc(all, func(a, b *series) int { return strings.Compare(a.labels, b.labels) })
	for _, s := range all {
		if v.gauge {
			emit(s.labels, math.Float64frombits(s.v.Load()))
		} else {
			emit(s.labels, float64(s.v.Load()))
		}
	}
}

// CounterVec is a counter with labels. A nil CounterVec counts nothing.
type CounterVec struct{ vec }

// CounterVec registers a counter family; name should end in _total.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	if r == nil {
		return nil
	}
	return register(r, name, help, labels, func() *CounterVec {
		return &CounterVec{vec{name: name, help: help, labels: labels}}
	})
}

func (c *CounterVec) header() (string, string, string) { return c.name, c.help, "counter" }

// Inc adds one to the series with the given label values.
func (c *CounterVec) Inc(values ...string) { c.Add(1, values...) }

// Add adds n to the series with the given label values.
func (c *CounterVec) Add(n uint64, values ...string) {
	if c == nil || n == 0 {
		return
	}
	c.get(values).v.Add(n)
}

// GaugeVec is a gauge with labels. A nil GaugeVec records nothing.
type GaugeVec struct{ vec }

// GaugeVec registers a gauge family.
func (r *Registry) GaugeVec(name, help string, labels ...string) *GaugeVec {
	if r == nil {
		return nil
	}
	return register(r, name, help, labels, func() *GaugeVec {
		return &GaugeVec{vec{name: name, help: help, labels: labels, gauge: true}}
	})
}

func (g *GaugeVec) header() (string, string, string) { return g.name, g.help, "gauge" }

// Set sets the series with the given label values to x.
func (g *GaugeVec) Set(x float64, values ...string) {
	if g == nil {
		return
	}
	g.get(values).v.Store(math.Float64bits(x))
}

// funcMetric is a metric without labels read when the metrics are written.
type funcMetric struct {
	name, help, kind string
	read             func() float64
}

func (f *funcMetric) header() (string, string, string) { return f.name, f.help, f.kind }
func (f *funcMetric) samples(emit func(string, float64)) {
	emit("", f.read())
}

// GaugeFunc registers a gauge without labels whose value read returns at
// each scrape; read must be cheap and must not block.
func (r *Registry) GaugeFunc(name, help string, read func() float64) {
	r.valueFunc(name, help, "gauge", read)
}

// CounterFunc registers a counter without labels kept elsewhere (by the
// runtime, a client library) and read at each scrape, like GaugeFunc.
func (r *Registry) CounterFunc(name, help string, read func() float64) {
	r.valueFunc(name, help, "counter", read)
}

func (r *Registry) valueFunc(name, help, kind string, read func() float64) {
	if r == nil {
		return
	}
	f := register(r, name, help, nil, func() *funcMetric { return &funcMetric{name: name, help: help, kind: kind, read: read} })
	if f.kind != kind {
		panic(fmt.Sprintf("metrics: %s registered twice with different kinds", name))
	}
}

// WriteTo writes every family, sorted by name, in the text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	families := make([]family, 0, len(names))
	slices.Sort(names)
	for _, n := range names {
		families = append(families, r.families[n])
	}
	r.mu.Unlock()

	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, f := range families {
		name, help, kind := f.header()
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, kind)
		f.samples(func(labels string, value float64) {
			bw.WriteString(name)
			bw.WriteString(labels)
			bw.WriteByte(' ')
			bw.WriteString(formatValue(value))
			bw.WriteByte('\n')
		})
	}
	err := bw.Flush()
	return cw.n, err
}

// Handler serves the registry at GET /metrics.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = r.WriteTo(w)
	})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func renderLabels(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabel escapes a label value; invalid UTF-8, which the format
// forbids, becomes U+FFFD.
func escapeLabel(s string) string { return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

var nan = math.NaN()

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
