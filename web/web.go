// Package web serves mailgw's HTTP endpoints: the verification pages an
// unknown sender reaches from the link in their mail, /healthz and /readyz
// for orchestrators, /metrics for Prometheus, and, when an admin token is
// configured, the decision-log page and its JSON API. GET never changes anything (mail scanners and link
// previews open links); only the Confirm button's POST does.
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"mailgw/metrics"
	"mailgw/verify"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// Verifier is the verification stage as the pages see it.
type Verifier interface {
	Inspect(ctx context.Context, token string) (verify.Pending, error)
	Confirm(ctx context.Context, token string) (verify.Pending, []string, error)
}

// Check reports whether a dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Server holds the handlers.
type Server struct {
	opt Options
	log zerolog.Logger
}

// Options are what the handlers serve.
type Options struct {
	Verifier Verifier
	// Ready names the checks /readyz runs.
	Ready map[string]Check
	// Metrics, when set, is served at /metrics.
	Metrics *metrics.Registry
	// AdminToken, when set, enables the decision-log page and the admin
	// API, which read DecisionLog; requests must present the token.
	AdminToken  string
	DecisionLog DecisionLog
}

// New returns the HTTP handlers.
func New(opt Options, log zerolog.Logger) *Server {
	return &Server{opt: opt, log: log.With().Str("component", "web").Logger()}
}

// Handler routes requests.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /verify/{token}", s.showVerify)
	mux.HandleFunc("POST /verify/{token}", s.confirm)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opt.Metrics != nil {
		mux.Handle("GET /metrics", s.opt.Metrics.Handler())
	}
	if s.opt.AdminToken != "" && s.opt.DecisionLog != nil {
		mux.Handle("GET /admin/log", s.admin(s.logPage))
		mux.Handle("GET /api/log", s.admin(s.logAPI))
	}
	return securityHeaders(mux)
}

// securityHeaders keeps the pages from being framed or leaking the token
// in a Referer, and from loading anything but themselves.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

type pageData struct {
	Title   string
	Address string
	Spaces  []string
	Held    int
	Queued  int
}

func (s *Server) render(w http.ResponseWriter, status int, page string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, page, d); err != nil {
		s.log.Error().Err(err).Str("page", page).Msg("render")
	}
}

// tokenError renders the page for a link that cannot be used.
func (s *Server) tokenError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, verify.ErrUnknownToken):
		s.render(w, http.StatusNotFound, "unknown.html", pageData{Title: "Link not recognised"})
	case errors.Is(err, verify.ErrExpired):
		s.render(w, http.StatusGone, "expired.html", pageData{Title: "Link expired"})
	default:
		s.log.Error().Err(err).Msg("verification page")
		s.render(w, http.StatusServiceUnavailable, "unavailable.html", pageData{Title: "Please try again"})
	}
}

func (s *Server) showVerify(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	p, err := s.opt.Verifier.Inspect(r.Context(), token)
	if err != nil {
		s.tokenError(w, err)
		return
	}
	if p.Used {
		s.render(w, http.StatusOK, "done.html", pageData{Title: "Address confirmed", Address: p.Address, Spaces: p.Spaces})
		return
	}
	s.render(w, http.StatusOK, "confirm.html", pageData{Title: "Confirm your email address", Address: p.Address, Spaces: p.Spaces, Held: p.Held})
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	p, ids, err := s.opt.Verifier.Confirm(ctx, r.PathValue("token"))
	if err != nil {
		s.tokenError(w, err)
		return
	}
	s.log.Info().Str("address", p.Address).Strs("queued", ids).Msg("address confirmed")
	s.render(w, http.StatusOK, "done.html", pageData{Title: "Address confirmed", Address: p.Address, Spaces: p.Spaces, Queued: len(ids)})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	status, body := http.StatusOK, ""
	for name, check := range s.opt.Ready {
		if err := check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			body += name + ": not ready\n"
			s.log.Warn().Err(err).Str("check", name).Msg("not ready")
		} else {
			body += name + ": ok\n"
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
