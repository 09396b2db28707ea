package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgw/internal/redistest"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

type expectedCorpus struct {
	Messages map[string]struct {
		Decisions []replayDecision `json:"decisions"`
	} `json:"messages"`
}

// TestReplayJSON drives "mailgw replay --json" over the fixture corpus on a
// real redis-server and checks the output contract of DESIGN §7.
func TestReplayJSON(t *testing.T) {
	srv := redistest.Real(t)
	t.Setenv("MAILGW_REDIS_URL", srv.URL)
	dir := "../../testdata/mails"
	code, out, errOut := runCLI(t, "replay", "--json", "--config", filepath.Join(dir, "config.yaml"), dir)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedCorpus
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
		var l replayLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stdout line %d is not JSON: %v: %q", lines, err, sc.Text())
		}
		want := exp.Messages[filepath.Base(l.File)].Decisions
		if len(l.Decisions) != len(want) {
			t.Errorf("%s: %d decisions, want %d", l.File, len(l.Decisions), len(want))
			continue
		}
		for i, d := range l.Decisions {
			if d.Space != want[i].Space || d.Outcome != want[i].Outcome || d.Reason != want[i].Reason {
				t.Errorf("%s: %+v, want %+v", l.File, d, want[i])
			}
			if d.Outcome == "queued" && d.Request == "" {
				t.Errorf("%s: queued without a request id", l.File)
			}
		}
	}
	if lines != len(exp.Messages) {
		t.Errorf("%d lines of output for %d messages", lines, len(exp.Messages))
	}

	// The decisions are in the log, and the log command filters them.
	code, out, errOut = runCLI(t, "log", "--config", filepath.Join(dir, "config.yaml"), "--reason", "no_route", "--json", "-n", "1000")
	if code != exitOK {
		t.Fatalf("log: exit %d\n%s", code, errOut)
	}
	if n := strings.Count(out, `"reason":"no_route"`); n == 0 || n != strings.Count(out, "\n") {
		t.Errorf("log --reason no_route printed %d matching of %d lines:\n%s", n, strings.Count(out, "\n"), out)
	}
}

func TestExitStatus(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("spaces:\n  - {key: it, addresses: [nope]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eml := "../../testdata/mails"
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no command", nil, exitUsage, "Usage"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"bad flag", []string{"replay", "--nope", eml}, exitUsage, "flag provided but not defined"},
		{"no paths", []string{"replay"}, exitUsage, "no files"},
		{"missing path", []string{"replay", "/nonexistent/x.eml"}, exitUsage, "no such file"},
		{"bad config", []string{"check", "--config", bad}, exitUsage, "spaces[0].addresses[0]"},
		{"missing config", []string{"check", "--config", "/nonexistent.yaml"}, exitUsage, "nonexistent"},
		{"unreachable redis", []string{"replay", "--config", "../../testdata/mails/config.yaml", eml}, exitRuntime, "redis"},
		{"help", []string{"replay", "--help"}, exitOK, "Usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "unreachable redis" {
				t.Setenv("MAILGW_REDIS_URL", "redis://127.0.0.1:1/0")
			}
			code, _, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.err) {
				t.Errorf("exit %d, want %d; stderr %q should mention %q", code, tt.code, errOut, tt.err)
			}
		})
	}
}

func TestDemoReplay(t *testing.T) {
	t.Setenv("MAILGW_CONFIG", "")
	t.Setenv("MAILGW_REDIS_URL", "")
	dir := t.TempDir()
	msg := "From: Carol <carol@demo.example>\r\nTo: it@demo.example\r\nSubject: Hello\r\nMessage-ID: <d1@demo.example>\r\n\r\nHi\r\n"
	if err := os.WriteFile(filepath.Join(dir, "a.eml"), []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "replay", dir)
	if code != exitOK || !strings.Contains(out, "accepted") || !strings.Contains(out, "IT-1") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "EMBEDDED") {
		t.Errorf("the embedded Redis was not announced: %s", errOut)
	}
	code, out, _ = runCLI(t, "replay", "--dry-run", "--json", "--to", "billing@demo.example", dir)
	if code != exitOK || !strings.Contains(out, `"reason":"not_space_customer"`) {
		t.Fatalf("--to: exit %d: %s", code, out)
	}
}

func TestDirectoryCommands(t *testing.T) {
	srv := redistest.Real(t)
	t.Setenv("MAILGW_REDIS_URL", srv.URL)
	t.Setenv("MAILGW_CONFIG", "")
	csv := filepath.Join(t.TempDir(), "c.csv")
	if err := os.WriteFile(csv, []byte("email,name,type\nAnn@Customer.example,Ann,\nbo@demo.example,Bo,internal\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"customers", "add", "--name", "Zed", "zed@customer.example"}, exitOK, "added (portal, active)"},
		{[]string{"customers", "add", "zed@customer.example"}, exitOK, "already exists"},
		{[]string{"customers", "import", csv}, exitOK, "ann@customer.example: added"},
		{[]string{"customers", "disable", "ZED@customer.example"}, exitOK, "disabled"},
		{[]string{"customers", "show", "zed@customer.example"}, exitOK, `"status": "disabled"`},
		{[]string{"customers", "list"}, exitOK, "bo@demo.example"},
		{[]string{"customers", "remove", "bo@demo.example"}, exitOK, "removed"},
		{[]string{"customers", "remove", "bo@demo.example"}, exitUsage, ""},
		{[]string{"customers", "show", "not an address"}, exitUsage, ""},
		{[]string{"orgs", "add", "--domains", "acme.example", "Acme"}, exitOK, "added"},
		{[]string{"orgs", "add-member", "Acme", "zed@customer.example"}, exitOK, "added"},
		{[]string{"orgs", "link", "Acme", "bill"}, exitOK, "linked to BILL"},
		{[]string{"orgs", "link", "Acme", "NOPE"}, exitUsage, ""},
		{[]string{"orgs", "add-member", "Nobody", "zed@customer.example"}, exitUsage, ""},
		{[]string{"orgs", "list"}, exitOK, "acme.example"},
	}
	for _, s := range steps {
		code, out, errOut := runCLI(t, s.args...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Fatalf("%v: exit %d (want %d), stdout %q (want %q), stderr %s", s.args, code, s.code, out, s.out, errOut)
		}
	}
}
