package redistest

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/internal/proctest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMini(t *testing.T) {
	c, m := Mini(t)
	if err := c.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m.CheckGet(t, "k", "v")
}

func TestReal(t *testing.T) {
	s := Real(t)
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want 127.0.0.1:PORT", s.Addr)
	}
	opt, err := redis.ParseURL(s.URL)
	if err != nil || opt.Addr != s.Addr || opt.DB != 0 {
		t.Errorf("URL %q parses to %+v, %v; want addr %s, db 0", s.URL, opt, err, s.Addr)
	}

	c := s.Client(t)
	cfg, err := c.ConfigGet(ctx(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1", "dir": s.Dir} {
		if cfg[k] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", k, cfg[k], want)
		}
	}
	if err := c.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx(t), "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}

	s.Stop()
	s.Stop() // no-op
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("PING succeeded while the server was stopped")
	}

	s.Start()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	// Without AppendOnly nothing is persisted.
	if err := c.Get(ctx(t), "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after restart = %v, want redis.Nil", err)
	}
}

func TestRealAppendOnlyPersists(t *testing.T) {
	s := RealWith(t, Options{AppendOnly: true, ExtraArgs: []string{"--appendfsync", "always"}})
	c := s.Client(t)

	if err := c.Set(ctx(t), "stopped", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Start()
	if got, err := c.Get(ctx(t), "stopped").Result(); err != nil || got != "1" {
		t.Fatalf("GET after Stop/Start = %q, %v; want 1", got, err)
	}

	if err := c.Set(ctx(t), "killed", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	s.Start()
	if got, err := c.Get(ctx(t), "killed").Result(); err != nil || got != "2" {
		t.Fatalf("GET after Kill/Start = %q, %v; want 2", got, err)
	}
}

func TestRealExtraArgs(t *testing.T) {
	s := RealWith(t, Options{ExtraArgs: []string{"--maxmemory", "1mb"}})
	got, err := s.Client(t).ConfigGet(ctx(t), "maxmemory").Result()
	if err != nil || got["maxmemory"] != "1048576" {
		t.Fatalf("CONFIG GET maxmemory = %v, %v; want 1048576", got, err)
	}
}

func TestRealServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := Real(t), Real(t)
	if a.Addr == b.Addr || a.Dir == b.Dir {
		t.Fatalf("servers share %s / %s", a.Addr, a.Dir)
	}
	if err := a.Client(t).Set(ctx(t), "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Client(t).Get(ctx(t), "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k on the second server = %v, want redis.Nil", err)
	}
}

func TestRealCleanup(t *testing.T) {
	var s *Server
	var pid int
	t.Run("server", func(t *testing.T) {
		s = Real(t)
		pid = s.run.PID()
	})
	if s.run.PID() != 0 {
		t.Error("server still recorded as running after its test ended")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("redis-server pid %d still exists after cleanup (kill -0: %v)", pid, err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still exists after cleanup: %v", s.Dir, err)
	}
}

func TestRealPortTaken(t *testing.T) {
	s := Real(t)
	s.Stop()
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	if err := s.run.Start(0); !errors.Is(err, proctest.ErrBind) {
		t.Fatalf("start on a taken port = %v, want ErrBind", err)
	}
}

// recorder captures how a helper ends the test.
type recorder struct {
	testing.TB
	ended string // "fatal" or "skip"
	msg   string
}

func (r *recorder) Fatal(args ...any)                 { r.end("fatal", args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.end("fatal", format, args) }
func (r *recorder) Skip(args ...any)                  { r.end("skip", args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.end("skip", format, args) }

func (r *recorder) end(how string, args ...any) {
	r.ended = how
	for _, a := range args {
		if s, ok := a.(string); ok {
			r.msg += s
		}
	}
	runtime.Goexit()
}

func TestMissingRedisServer(t *testing.T) {
	for _, tc := range []struct {
		skip, ci, require string
		want              string
	}{
		{want: "fatal"},
		{skip: "1", want: "skip"},
		{skip: "1", ci: "true", want: "fatal"},
		{skip: "1", require: "1", want: "fatal"},
	} {
		t.Setenv("PATH", t.TempDir())
		t.Setenv("MAILGW_SKIP_REAL", tc.skip)
		t.Setenv("CI", tc.ci)
		t.Setenv("MAILGW_REQUIRE_REAL", tc.require)

		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			lookRedisServer(r)
		}()
		<-done
		if r.ended != tc.want || !strings.Contains(r.msg, "scripts/test.sh") {
			t.Errorf("SKIP=%q CI=%q REQUIRE=%q: ended with %q %q, want %s mentioning scripts/test.sh",
				tc.skip, tc.ci, tc.require, r.ended, r.msg, tc.want)
		}
	}
}
