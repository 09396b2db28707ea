package dovecottest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailgw/internal/proctest"
)

func message(n int) []byte {
	return fmt.Appendf(nil, "From: carol@example.com\r\nTo: it@example.com\r\nSubject: test %d\r\n"+
		"Message-ID: <%d@dovecottest.example>\r\n\r\nBody %d.\r\n", n, n, n)
}

func TestStart(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Port() == 0 {
		t.Errorf("Addr = %q, Port = %d; want 127.0.0.1:PORT", s.Addr(), s.Port())
	}
	if s.User != DefaultUser || s.Password != DefaultPassword {
		t.Errorf("user %q/%q, want %q/%q", s.User, s.Password, DefaultUser, DefaultPassword)
	}
	conf, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"protocols = imap\n", "listen = 127.0.0.1\n", "ssl = no\n", "port = " + strconv.Itoa(s.Port()) + "\n"} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("dovecot.conf lacks %q", want)
		}
	}

	// Only IMAP, only on our port: no IMAPS, POP3 or other listeners.
	c := s.Client(t)
	if !c.Caps().Has(imap.CapIdle) || !c.Caps().Has(imap.CapMove) || !c.Caps().Has(imap.CapUIDPlus) {
		t.Errorf("capabilities %v lack IDLE, MOVE or UIDPLUS", c.Caps())
	}

	// A wrong password is refused.
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bad := imapclient.New(conn, nil)
	defer bad.Close()
	if err := bad.Login(s.User, "wrong").Wait(); err == nil {
		t.Error("LOGIN with a wrong password succeeded")
	}
}

func TestAppendMessagesStatus(t *testing.T) {
	s := Start(t)
	if got := s.Messages(t, "INBOX"); len(got) != 0 {
		t.Fatalf("new INBOX has %d messages", len(got))
	}
	u1 := s.Append(t, "INBOX", message(1))
	u2 := s.Append(t, "INBOX", message(2), imap.FlagSeen, imap.FlagFlagged)
	if u1 == 0 || u2 <= u1 {
		t.Fatalf("UIDs %d, %d; want increasing, non-zero (UIDPLUS)", u1, u2)
	}
	lf := []byte("From: carol@example.com\nSubject: LF only\n\nbody\n")
	u3 := s.Append(t, "INBOX", lf)

	got := s.Messages(t, "INBOX")
	if len(got) != 3 {
		t.Fatalf("Messages: %d, want 3", len(got))
	}
	if got[0].UID != u1 || !bytes.Equal(got[0].Raw, message(1)) || got[0].Seen() {
		t.Errorf("message 1: %+v", got[0])
	}
	if got[1].UID != u2 || !got[1].Seen() || !bytes.Contains(got[1].Raw, []byte("test 2")) {
		t.Errorf("message 2: UID %d flags %v", got[1].UID, got[1].Flags)
	}
	// Dovecot hands out LF-only mail with CRLF, as IMAP requires.
	if got[2].UID != u3 || !bytes.Equal(got[2].Raw, bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))) {
		t.Errorf("message 3: %q", got[2].Raw)
	}
	// Messages changes no flag.
	if again := s.Messages(t, "INBOX"); again[0].Seen() {
		t.Error("Messages marked a message \\Seen")
	}
	st := s.Status(t, "INBOX")
	if st.Messages != 3 || st.Unseen != 2 || st.UIDNext != u3+1 || st.UIDValidity == 0 {
		t.Errorf("Status = %+v, want 3 messages, 2 unseen, UIDNEXT %d", st, u3+1)
	}

	raws := make([][]byte, 200)
	for i := range raws {
		raws[i] = message(100 + i)
	}
	uids := s.AppendAll(t, "Other", nil) // nothing to do, no error
	if len(uids) != 0 {
		t.Fatalf("AppendAll of nothing: %v", uids)
	}
	s.Create(t, "Other")
	uids = s.AppendAll(t, "Other", raws)
	if len(uids) != len(raws) {
		t.Fatalf("AppendAll: %d UIDs for %d messages", len(uids), len(raws))
	}
	other := s.Messages(t, "Other")
	if len(other) != len(raws) {
		t.Fatalf("Other has %d messages, want %d", len(other), len(raws))
	}
	for i, m := range other {
		if m.UID != uids[i] || !bytes.Equal(m.Raw, raws[i]) {
			t.Fatalf("Other message %d: UID %d (want %d), raw %q", i, m.UID, uids[i], m.Raw)
		}
	}
	if got := s.Mailboxes(t); strings.Join(got, ",") != "INBOX,Other" {
		t.Errorf("Mailboxes = %v, want [INBOX Other]", got)
	}
}

func TestUserOption(t *testing.T) {
	s := Start(t, User("helpdesk", "pw-1"))
	if s.User != "helpdesk" || s.Password != "pw-1" {
		t.Fatalf("user %q/%q", s.User, s.Password)
	}
	s.Append(t, "INBOX", message(1))
	if n := len(s.Messages(t, "INBOX")); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestConfigOption(t *testing.T) {
	s := Start(t, Config("mail_max_userip_connections = 1"))
	c := s.Client(t) // the one connection allowed
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryStatus("INBOX"); err == nil {
		t.Fatal("a second connection was allowed with mail_max_userip_connections = 1")
	}
}

// TestIdleNotifies checks what mailgw's IDLE relies on: Dovecot tells an
// idling client about new mail at once (inotify on the Maildir).
func TestIdleNotifies(t *testing.T) {
	s := Start(t)
	exists := make(chan uint32, 16)
	c := s.ClientWith(t, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Append(t, "INBOX", message(1))
	select {
	case n := <-exists:
		t.Logf("EXISTS %d %v after APPEND", n, time.Since(start))
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EXISTS within 10 s while idling")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestStopStart(t *testing.T) {
	s := Start(t)
	uid := s.Append(t, "INBOX", message(1))
	before := s.Status(t, "INBOX")
	pid, addr := s.PID(), s.Addr()

	s.Stop()
	s.Stop() // no-op
	if s.PID() != 0 {
		t.Error("PID not 0 after Stop")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("master pid %d still exists after Stop (kill -0: %v)", pid, err)
	}
	assertGroupGone(t, pid)
	if _, err := s.TryStatus("INBOX"); err == nil {
		t.Fatal("STATUS succeeded while the server was stopped")
	}

	s.Start()
	if s.Addr() != addr || s.PID() == pid || s.PID() == 0 {
		t.Errorf("after Start: addr %s (was %s), pid %d (was %d)", s.Addr(), addr, s.PID(), pid)
	}
	after := s.Status(t, "INBOX")
	if after.UIDValidity != before.UIDValidity || after.Messages != 1 {
		t.Errorf("after restart: %+v, before: %+v", after, before)
	}
	if got := s.Messages(t, "INBOX"); len(got) != 1 || got[0].UID != uid {
		t.Errorf("after restart: %+v", got)
	}
}

// TestStopEndsClients: Stop closes the connections of clients, as a
// server shutdown does.
func TestStopEndsClients(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected 10 s after Stop")
	}
	s.Start()
	s.Append(t, "INBOX", message(1))
}

func TestKill(t *testing.T) {
	s := Start(t)
	s.Append(t, "INBOX", message(1))
	c := s.Client(t) // an imap process in the group
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	if n := groupMembers(t, pid); n < 3 {
		t.Errorf("process group %d has %d members; want the master and its children", pid, n)
	}
	s.Kill()
	s.Kill() // no-op
	assertGroupGone(t, pid)
	s.Start()
	if n := len(s.Messages(t, "INBOX")); n != 1 {
		t.Errorf("%d messages after Kill and Start, want 1", n)
	}
}

func TestCleanup(t *testing.T) {
	var s *Server
	var pid int
	t.Run("server", func(t *testing.T) {
		s = Start(t)
		pid = s.PID()
	})
	if s.PID() != 0 {
		t.Error("server still recorded as running after its test ended")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("master pid %d still exists after cleanup (kill -0: %v)", pid, err)
	}
	assertGroupGone(t, pid)
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after cleanup: %v", s.Dir, err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() || a.Dir == b.Dir {
		t.Fatalf("servers share %s / %s", a.Addr(), a.Dir)
	}
	a.Append(t, "INBOX", message(1))
	if n := len(b.Messages(t, "INBOX")); n != 0 {
		t.Fatalf("second server has %d messages", n)
	}
}

func TestPortTaken(t *testing.T) {
	s := Start(t)
	s.Stop()
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.run.Start(0); !errors.Is(err, proctest.ErrBind) {
		t.Fatalf("start on a taken port = %v, want ErrBind", err)
	}
}

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"2.3.19.1 (9b53102964)", false},
		{"2.4.0 (abc)", true},
		{"2.4.1-4 (abc)", true},
		{"3.0.0", true},
		{"2.10.0", true},
		{"garbage", false},
	} {
		if got := atLeast(tc.v, 2, 4); got != tc.want {
			t.Errorf("atLeast(%q, 2, 4) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestConfigFor24(t *testing.T) {
	conf := config("2.4.1 (x)", "/tmp/d", 1143, "support", account{internal: "u", login: "u", uid: 1000, gid: 1000})
	for _, want := range []string{"dovecot_config_version = 2.4.0", "auth_allow_cleartext = yes", "mail_path = /tmp/d/mail/%{user}", "passwd_file_path = /tmp/d/passwd", "chroot =\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("2.4 config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "disable_plaintext_auth") || strings.Contains(conf, "mail_location") {
		t.Errorf("2.4 config has settings 2.4 removed:\n%s", conf)
	}
}

// recorder captures how Start ends the test.
type recorder struct {
	testing.TB
	ended string
	msg   string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatal(args ...any)                 { r.end(fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.end(fmt.Sprintf(format, args...)) }

func (r *recorder) end(msg string) {
	r.ended, r.msg = "fatal", msg
	runtime.Goexit()
}

func TestMissingDovecot(t *testing.T) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(r, Binary(t.TempDir()+"/dovecot"))
	}()
	<-done
	if r.ended != "fatal" || !strings.Contains(r.msg, "scripts/test.sh") {
		t.Errorf("missing binary: ended %q with %q; want a fatal error naming scripts/test.sh", r.ended, r.msg)
	}
}

// groupMembers counts the live processes of process group pgid.
func groupMembers(t *testing.T, pgid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

// assertGroupGone waits briefly for the processes of group pgid to be
// gone: killed processes are reaped by init a moment later.
func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for groupMembers(t, pgid) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has %d live processes", pgid, groupMembers(t, pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
