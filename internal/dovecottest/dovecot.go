package dovecottest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgw/internal/proctest"
)

// DefaultBinary is where Debian's dovecot-core puts the master process.
const DefaultBinary = "/usr/sbin/dovecot"

// The one mail user Start creates unless the User option says otherwise.
const (
	DefaultUser     = "support"
	DefaultPassword = "secret"
)

const (
	startTimeout  = 15 * time.Second      // bound on waiting for a new server to log a user in
	rebindTimeout = 5 * time.Second       // Start after Stop: how long a taken port is retried
	stopGrace     = 5 * time.Second       // between SIGTERM and SIGKILL
	probeTimeout  = 2 * time.Second       // per readiness probe
	pollInterval  = 25 * time.Millisecond // between readiness probes
	portAttempts  = 5                     // fresh ports tried when bind fails
	opTimeout     = 60 * time.Second      // whole Append, Messages, Status, ... operation
	dialTimeout   = 5 * time.Second       // TCP connect of a helper client
	maxBaseDir    = 60                    // longest temporary directory; sockets live below it
	versionWait   = 10 * time.Second      // dovecot --version
	userIPConns   = 1000                  // mail_max_userip_connections
	clientLimit   = 1000                  // default_client_limit
	processLimit  = 500                   // default_process_limit
	probeTag      = "dovecottest-probe"   // IMAP tag of the readiness probe
)

// Option changes how Start configures the server.
type Option func(*settings)

type settings struct {
	bin            string
	user, password string
	extra          string
}

// User sets the name and password of the mail user (default support,
// secret). The name must be a plain word: letters, digits, '.', '_', '-'.
func User(name, password string) Option {
	return func(s *settings) { s.user, s.password = name, password }
}

// Config appends lines to the generated dovecot.conf; later settings
// override earlier ones, so this can change any default.
func Config(lines string) Option {
	return func(s *settings) { s.extra += lines + "\n" }
}

// Binary runs another dovecot executable instead of /usr/sbin/dovecot.
func Binary(path string) Option {
	return func(s *settings) { s.bin = path }
}

// Server is a Dovecot instance owned by one test. It runs until the test
// ends unless the test stops or kills it first.
//
// Stop, Start and Kill report failures with the test's Fatal, so call them
// from the goroutine running the test that created the Server. Append,
// Messages and the other client helpers take the testing.TB to fail.
type Server struct {
	Dir      string // temporary directory: dovecot.conf, passwd, mail/, run/ (base_dir), state/
	Config   string // path of the generated dovecot.conf
	LogFile  string // Dovecot's log (log_path); its tail is shown when start-up fails
	User     string // mail user name
	Password string // its password
	Version  string // output of dovecot --version, e.g. "2.3.19.1 (9b53102964)"

	t   testing.TB
	run *proctest.Server
}

// Start writes a configuration into a new temporary directory and runs
// "dovecot -F -c DIR/dovecot.conf" listening for IMAP on 127.0.0.1 and a
// free port, then waits until the mail user can log in. Dovecot and every
// process it spawns are killed, and the directory removed, when the test
// ends. If the port is taken before Dovecot binds it, Start tries up to
// five ports.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	st := settings{bin: DefaultBinary, user: DefaultUser, password: DefaultPassword}
	for _, o := range opts {
		o(&st)
	}
	if !plainWord(st.user) || strings.ContainsAny(st.password, ":\r\n\"\\") {
		t.Fatalf("dovecottest: unusable user %q or password (no ':', quotes, backslashes or line breaks)", st.user)
	}
	if fi, err := os.Stat(st.bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("dovecottest: %s is not installed (%v): run scripts/test.sh, which installs dovecot-imapd", st.bin, err)
	}
	version, err := dovecotVersion(st.bin)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	acct, err := accounts()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}

	dir := tempDir(t)
	s := &Server{
		Dir:      dir,
		Config:   filepath.Join(dir, "dovecot.conf"),
		LogFile:  filepath.Join(dir, "dovecot.log"),
		User:     st.user,
		Password: st.password,
		Version:  version,
		t:        t,
	}
	s.run = proctest.NewServer(t, proctest.ServerSpec{
		Name:    "dovecottest: Dovecot",
		Dir:     dir,
		OutFile: filepath.Join(dir, "dovecot.out"),
		LogFile: s.LogFile,
		// Once the master has exited nothing of its group may outlive
		// it, as children would keep the listening socket and the mail
		// open.
		Group: true,
		Ready: startTimeout,
		Poll:  pollInterval,
		Grace: stopGrace,
		Command: func(string) *exec.Cmd {
			return exec.Command(st.bin, "-F", "-c", s.Config)
		},
		Probe: func(addr string, _ int) error { return probe(addr, s.User, s.Password) },
	})
	t.Cleanup(s.cleanup)
	if err := s.prepare(acct); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	err = s.run.StartOnFreePort(portAttempts, func(port int) error {
		conf := config(version, dir, port, st.user, acct) + st.extra
		return os.WriteFile(s.Config, []byte(conf), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dovecottest: Dovecot %s pid %d listening on %s, dir %s", version, s.run.PID(), s.Addr(), dir)
	return s
}

// Addr is the IMAP listener, "127.0.0.1:PORT". It stays the same across
// Stop and Start.
func (s *Server) Addr() string { return s.run.Addr() }

// Port is the port of Addr.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// PID is the process id of the Dovecot master, 0 while stopped.
func (s *Server) PID() int { return s.run.PID() }

// Stop shuts Dovecot down with SIGTERM (the master ends its children and
// the connections they serve) and waits until the master has exited;
// anything of its process group still alive then is killed. After
// stopGrace the whole group is killed. Mail stays; Start brings the server
// back on the same port. Stop on a stopped server does nothing.
func (s *Server) Stop() { s.run.Stop() }

// Kill ends Dovecot's whole process group with SIGKILL, to simulate a
// crash of the server, and waits for the master. Start brings it back.
// Kill on a stopped server does nothing.
func (s *Server) Kill() { s.run.Kill() }

// Start restarts a stopped or killed server with the same configuration,
// port and mail, and waits until the user can log in. A port still held
// by a dying process is retried for a few seconds; Start fails the test
// if the server is running or the port stays taken.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.run.Start(rebindTimeout); err != nil {
		s.t.Fatal(err)
	}
}

// cleanup ends the processes and removes the directory at the end of the test.
func (s *Server) cleanup() {
	s.run.Close()
	if s.t.Failed() {
		s.t.Logf("dovecottest: Dovecot log %s:\n%s", s.LogFile, proctest.Tail(s.LogFile, 0))
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		s.t.Errorf("dovecottest: remove %s: %v", s.Dir, err)
	}
}

// probe reads the greeting ("* OK ..."), logs in and out over a raw
// connection. Dovecot greets before its auth process is up ("* OK Waiting
// for authentication process to respond.."), so only a successful LOGIN
// says it is ready.
func probe(addr, user, password string) error {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	if _, err := fmt.Fprintf(conn, "%s LOGIN \"%s\" \"%s\"\r\n", probeTag, user, password); err != nil {
		return err
	}
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, probeTag+" ") {
			break
		}
	}
	if !strings.HasPrefix(line, probeTag+" OK") {
		return fmt.Errorf("LOGIN answered %q", strings.TrimSpace(line))
	}
	_, _ = fmt.Fprintf(conn, "%s LOGOUT\r\n", probeTag)
	return nil
}

// account is who Dovecot's processes and the mail files run as.
type account struct {
	root     bool
	internal string // default_internal_user
	login    string // default_login_user
	group    string // default_internal_group, when not root
	uid, gid int    // of the mail user
}

// accounts picks the users: as root, dovecot and dovenull for Dovecot's
// own processes (nobody where they do not exist) and nobody for the mail;
// as anyone else, that user for everything.
func accounts() (account, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return account{}, fmt.Errorf("current user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		group := u.Gid
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			group = g.Name
		}
		return account{internal: u.Username, login: u.Username, group: group, uid: uid, gid: gid}, nil
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return account{}, fmt.Errorf("running as root needs a user nobody for the mail: %w", err)
	}
	a := account{root: true, internal: "nobody", login: "nobody"}
	a.uid, _ = strconv.Atoi(nobody.Uid)
	a.gid, _ = strconv.Atoi(nobody.Gid)
	if _, err := user.Lookup("dovecot"); err == nil {
		a.internal = "dovecot"
	}
	if _, err := user.Lookup("dovenull"); err == nil {
		a.login = "dovenull"
	}
	return a, nil
}

// tempDir makes the server's directory. Dovecot keeps its UNIX sockets in
// base_dir, whose paths may not exceed 108 bytes; t.TempDir's paths, named
// after the test, can be longer, so the directory is a short one of its
// own, removed by the cleanup.
func tempDir(t testing.TB) string {
	t.Helper()
	parent := ""
	if len(os.TempDir()) > maxBaseDir-20 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "dovecottest-")
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	if strings.ContainsAny(dir, " \t\"'\\#") {
		_ = os.RemoveAll(dir)
		t.Fatalf("dovecottest: temporary directory %q has characters dovecot.conf cannot take", dir)
	}
	return dir
}

// prepare creates the passwd-file and the directories with the owners and
// modes the account needs.
func (s *Server) prepare(a account) error {
	// Dovecot's auth process (default_internal_user) reads the passwd
	// file and the mail processes (the mail user) reach the mail below
	// this directory.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"mail", "run", "state"} {
		if err := os.Mkdir(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	mail := filepath.Join(s.Dir, "mail")
	if a.root {
		if err := os.Chown(mail, a.uid, a.gid); err != nil {
			return err
		}
	}
	line := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", s.User, s.Password, a.uid, a.gid, filepath.Join(mail, s.User))
	return os.WriteFile(filepath.Join(s.Dir, "passwd"), []byte(line), 0o644)
}

// config returns dovecot.conf for the installed version: 2.4 changed the
// syntax of several settings this needs.
func config(version, dir string, port int, user string, a account) string {
	var b strings.Builder
	v24 := atLeast(version, 2, 4)
	if v24 {
		b.WriteString("dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n")
	}
	fmt.Fprintf(&b, `# Written by mailgw's internal/dovecottest for Dovecot %s.
protocols = imap
listen = 127.0.0.1
base_dir = %[2]s/run
state_dir = %[2]s/state
instance_name = dovecottest
log_path = %[2]s/dovecot.log
ssl = no
auth_mechanisms = plain login
first_valid_uid = %[3]d
first_valid_gid = %[4]d
default_internal_user = %[5]s
default_login_user = %[6]s
default_client_limit = %[7]d
default_process_limit = %[8]d
mail_max_userip_connections = %[9]d
# Tests kill processes, never the machine: no fsync, which stalls for
# seconds on a busy shared disk.
mail_fsync = never
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[10]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, version, dir, a.uid, a.gid, a.internal, a.login, clientLimit, processLimit, userIPConns, port)
	if v24 {
		fmt.Fprintf(&b, `auth_allow_cleartext = yes
mail_driver = maildir
mail_path = %[1]s/mail/%%{user}
passdb passwd-file {
  passwd_file_path = %[1]s/passwd
}
userdb passwd-file {
  passwd_file_path = %[1]s/passwd
}
`, dir)
	} else {
		fmt.Fprintf(&b, `disable_plaintext_auth = no
mail_location = maildir:%[1]s/mail/%%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
}
`, dir)
	}
	if !a.root {
		// Without root the master can neither chroot nor change the
		// owners of its processes and sockets.
		fmt.Fprintf(&b, "default_internal_group = %s\n", a.group)
		b.WriteString(`service imap-login {
  chroot =
}
service anvil {
  chroot =
}
service auth-worker {
  user = $default_internal_user
}
`)
	}
	return b.String()
}

// dovecotVersion runs "dovecot --version".
func dovecotVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), versionWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %v: %s", bin, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// atLeast reports whether a version string such as "2.3.19.1 (9b53102964)"
// is major.minor or newer.
func atLeast(version string, major, minor int) bool {
	f := strings.FieldsFunc(version, func(r rune) bool { return r == '.' || r == ' ' })
	if len(f) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(f[0])
	mi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func plainWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
