package dovecottest

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// appendWindow is how many APPEND commands AppendAll keeps in flight.
const appendWindow = 64

// Msg is one message as Messages returns it.
type Msg struct {
	UID   imap.UID
	Flags []imap.Flag
	Raw   []byte // as the server returns it: BODY[], with CRLF line ends
}

// Seen reports whether the message has the \Seen flag.
func (m Msg) Seen() bool { return slices.Contains(m.Flags, imap.FlagSeen) }

// Status is what STATUS says about a mailbox.
type Status struct {
	Messages    uint32
	Unseen      uint32
	UIDNext     imap.UID
	UIDValidity uint32
}

// Client returns a go-imap client logged in as the mail user, without any
// time limit on its commands (IDLE may wait long); it is closed when the
// test ends.
func (s *Server) Client(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := s.login(nil, 0)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ClientWith is Client with options, e.g. a UnilateralDataHandler that
// sees IDLE's EXISTS responses.
func (s *Server) ClientWith(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := s.login(opts, 0)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// login connects and logs in. A limit above zero bounds the whole
// connection: every read and write must be done by then.
func (s *Server) login(opts *imapclient.Options, limit time.Duration) (*imapclient.Client, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), dialTimeout)
	if err != nil {
		return nil, err
	}
	if limit > 0 {
		_ = conn.SetDeadline(time.Now().Add(limit))
	}
	c := imapclient.New(conn, opts)
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login to %s as %s: %w", s.Addr(), s.User, err)
	}
	return c, nil
}

// session runs f on a fresh, logged-in connection with the operation's
// time limit and logs out afterwards.
func (s *Server) session(f func(c *imapclient.Client) error) error {
	c, err := s.login(nil, opTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := f(c); err != nil {
		return err
	}
	return c.Logout().Wait()
}

// Append stores raw in mailbox with the given flags and returns its UID.
func (s *Server) Append(t testing.TB, mailbox string, raw []byte, flags ...imap.Flag) imap.UID {
	t.Helper()
	var uid imap.UID
	err := s.session(func(c *imapclient.Client) error {
		var err error
		uid, err = appendOne(c, mailbox, raw, flags)
		return err
	})
	if err != nil {
		t.Fatalf("dovecottest: APPEND to %s: %v", mailbox, err)
	}
	return uid
}

func appendOne(c *imapclient.Client, mailbox string, raw []byte, flags []imap.Flag) (imap.UID, error) {
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Flags: flags})
	if _, err := cmd.Write(raw); err != nil {
		_ = cmd.Close()
		return 0, err
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, err
	}
	return data.UID, nil
}

// AppendAll stores every message of raws in mailbox, in order, over one
// connection with the commands pipelined, and returns their UIDs.
func (s *Server) AppendAll(t testing.TB, mailbox string, raws [][]byte) []imap.UID {
	t.Helper()
	uids := make([]imap.UID, 0, len(raws))
	err := s.session(func(c *imapclient.Client) error {
		for start := 0; start < len(raws); start += appendWindow {
			var cmds []*imapclient.AppendCommand
			for _, raw := range raws[start:min(start+appendWindow, len(raws))] {
				cmd := c.Append(mailbox, int64(len(raw)), nil)
				_, werr := cmd.Write(raw)
				if cerr := cmd.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return werr
				}
				cmds = append(cmds, cmd)
			}
			for _, cmd := range cmds {
				data, err := cmd.Wait()
				if err != nil {
					return err
				}
				uids = append(uids, data.UID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dovecottest: APPEND %d messages to %s: %v", len(raws), mailbox, err)
	}
	return uids
}

// Messages returns every message of mailbox in UID order, read without
// changing any flag (EXAMINE and BODY.PEEK[]). A mailbox that does not
// exist fails the test; see Mailboxes.
func (s *Server) Messages(t testing.TB, mailbox string) []Msg {
	t.Helper()
	var out []Msg
	err := s.session(func(c *imapclient.Client) error {
		sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return err
		}
		if sel.NumMessages == 0 {
			return nil
		}
		var all imap.UIDSet
		all.AddRange(1, 0) // 1:*
		bufs, err := c.Fetch(all, &imap.FetchOptions{
			UID:         true,
			Flags:       true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			return err
		}
		for _, b := range bufs {
			m := Msg{UID: b.UID, Flags: b.Flags}
			if len(b.BodySection) > 0 {
				m.Raw = b.BodySection[0].Bytes
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dovecottest: read %s: %v", mailbox, err)
	}
	slices.SortFunc(out, func(a, b Msg) int { return cmp.Compare(a.UID, b.UID) })
	return out
}

// Status returns the counts of mailbox (STATUS), cheaper than Messages
// for polling.
func (s *Server) Status(t testing.TB, mailbox string) Status {
	t.Helper()
	st, err := s.TryStatus(mailbox)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	return st
}

// TryStatus is Status returning the error, for polling while the server
// may be down.
func (s *Server) TryStatus(mailbox string) (Status, error) {
	var st Status
	err := s.session(func(c *imapclient.Client) error {
		d, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, UIDValidity: true}).Wait()
		if err != nil {
			return err
		}
		if d.NumMessages == nil || d.NumUnseen == nil {
			return errors.New("STATUS answer without MESSAGES or UNSEEN")
		}
		st = Status{Messages: *d.NumMessages, Unseen: *d.NumUnseen, UIDNext: d.UIDNext, UIDValidity: d.UIDValidity}
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("STATUS %s: %w", mailbox, err)
	}
	return st, nil
}

// Mailboxes lists the user's mailboxes (LIST "" "*"), sorted.
func (s *Server) Mailboxes(t testing.TB) []string {
	t.Helper()
	var names []string
	err := s.session(func(c *imapclient.Client) error {
		list, err := c.List("", "*", nil).Collect()
		if err != nil {
			return err
		}
		for _, m := range list {
			names = append(names, m.Mailbox)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dovecottest: LIST: %v", err)
	}
	slices.Sort(names)
	return names
}

// Create makes a mailbox.
func (s *Server) Create(t testing.TB, mailbox string) {
	t.Helper()
	if err := s.session(func(c *imapclient.Client) error { return c.Create(mailbox, nil).Wait() }); err != nil {
		t.Fatalf("dovecottest: CREATE %s: %v", mailbox, err)
	}
}
