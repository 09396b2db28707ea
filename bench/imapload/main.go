// Command imapload is the IMAP side of bench/imap.sh: it fills a mailbox
// over IMAP (RFC 3501 APPEND, pipelined) and measures the baseline mailgw's
// poller is compared with — a plain go-imap v2 fetch loop that reads every
// message of a mailbox and does nothing with it.
//
// Usage:
//
//	imapload append   -addr HOST:PORT [-user U -pass P -mailbox M] -n N -size BYTES -tag TAG [-senders K]
//	imapload fetch    -addr HOST:PORT [-user U -pass P -mailbox M] [-batch 50]
//	imapload clear    -addr HOST:PORT [-user U -pass P] MAILBOX...
//	imapload status   -addr HOST:PORT [-user U -pass P -mailbox M]
//
// append writes N messages of about BYTES bytes each (headers included)
// to it@example.com, from K senders taking turns (carol@example.com, then
// customer-001@example.com and on; K is 1 unless given), with Message-IDs
// <TAG-NNNNNN@imapload.example>, so that every run has messages mailgw has
// not seen. fetch selects the mailbox, lists its UIDs (UID SEARCH ALL),
// fetches BODY.PEEK[] of batch UIDs per UID FETCH, reads every literal to
// the end and prints "fetched N messages, B bytes in S s: R msg/s"; its
// time runs from the TCP connect to the last byte. clear deletes every
// message of the given mailboxes (a missing mailbox is no error). status
// prints the message count.
//
// Only plain-text IMAP is spoken: the benchmark runs on 127.0.0.1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// window is how many APPEND commands are in flight at once.
const window = 64

type conn struct {
	addr, user, pass, mailbox string
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var c conn
	fs.StringVar(&c.addr, "addr", "", "IMAP server `host:port`")
	fs.StringVar(&c.user, "user", "support", "user name")
	fs.StringVar(&c.pass, "pass", "secret", "password")
	fs.StringVar(&c.mailbox, "mailbox", "INBOX", "mailbox")
	n := fs.Int("n", 5000, "messages to append")
	size := fs.Int("size", 4096, "bytes per message, headers included")
	tag := fs.String("tag", "run", "Message-ID prefix, unique per run")
	batch := fs.Int("batch", 50, "UIDs per UID FETCH")
	senders := fs.Int("senders", 1, "senders taking turns: carol@example.com, then customer-NNN@example.com")
	_ = fs.Parse(os.Args[2:])
	if c.addr == "" {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "append":
		err = appendMessages(c, *n, *size, *tag, max(*senders, 1))
	case "fetch":
		err = fetchAll(c, *batch)
	case "clear":
		err = clear(c, fs.Args())
	case "status":
		err = status(c)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "imapload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: imapload append|fetch|clear|status -addr HOST:PORT [flags]")
	os.Exit(2)
}

func (c conn) login() (*imapclient.Client, error) {
	raw, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	cl := imapclient.New(raw, nil)
	if err := cl.Login(c.user, c.pass).Wait(); err != nil {
		cl.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	return cl, nil
}

// Sender is the address of the k-th of the senders taking turns; bench/imap.sh
// lists the same addresses as customers.
func sender(k int) string {
	if k == 0 {
		return "carol@example.com"
	}
	return fmt.Sprintf("customer-%03d@example.com", k)
}

// message builds the i-th request, of about size bytes with CRLF line ends.
func message(tag string, i, size, senders int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: it@example.com\r\n"+
		"Subject: Load test %s %d\r\nDate: %s\r\nMessage-ID: <%s-%06d@imapload.example>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		sender(i%senders), tag, i, time.Now().UTC().Format(time.RFC1123Z), tag, i)
	line := "The quick brown fox jumps over the lazy dog; the printer on floor 3 is out of toner again.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

func appendMessages(c conn, n, size int, tag string, senders int) error {
	cl, err := c.login()
	if err != nil {
		return err
	}
	defer cl.Close()
	start := time.Now()
	for first := 0; first < n; first += window {
		var cmds []*imapclient.AppendCommand
		for i := first; i < min(first+window, n); i++ {
			raw := message(tag, i, size, senders)
			cmd := cl.Append(c.mailbox, int64(len(raw)), nil)
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
			if _, err := cmd.Wait(); err != nil {
				return err
			}
		}
	}
	fmt.Printf("appended %d messages of %d bytes to %s in %.2f s\n", n, size, c.mailbox, time.Since(start).Seconds())
	return cl.Logout().Wait()
}

// fetchAll is the baseline: everything a poller must do to read the
// mailbox, and nothing else.
func fetchAll(c conn, batch int) error {
	start := time.Now()
	cl, err := c.login()
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.Select(c.mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return err
	}
	data, err := cl.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		return err
	}
	uids := data.AllUIDs()
	var msgs, bytes int64
	section := &imap.FetchItemBodySection{Peek: true}
	for first := 0; first < len(uids); first += batch {
		set := imap.UIDSetNum(uids[first:min(first+batch, len(uids))]...)
		fetch := cl.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
		for m := fetch.Next(); m != nil; m = fetch.Next() {
			for item := m.Next(); item != nil; item = m.Next() {
				if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
					n, err := io.Copy(io.Discard, body.Literal)
					if err != nil {
						return err
					}
					bytes += n
					msgs++
				}
			}
		}
		if err := fetch.Close(); err != nil {
			return err
		}
	}
	secs := time.Since(start).Seconds()
	if msgs != int64(len(uids)) {
		return fmt.Errorf("fetched %d bodies for %d UIDs", msgs, len(uids))
	}
	fmt.Printf("fetched %d messages, %d bytes in %.3f s: %.0f msg/s\n", msgs, bytes, secs, float64(msgs)/secs)
	return cl.Logout().Wait()
}

func clear(c conn, mailboxes []string) error {
	cl, err := c.login()
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, mb := range mailboxes {
		sel, err := cl.Select(mb, nil).Wait()
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
			continue // no such mailbox
		}
		if err != nil {
			return err
		}
		if sel.NumMessages > 0 {
			var all imap.UIDSet
			all.AddRange(1, 0)
			if err := cl.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			if err := cl.Expunge().Close(); err != nil {
				return err
			}
		}
	}
	return cl.Logout().Wait()
}

func status(c conn) error {
	cl, err := c.login()
	if err != nil {
		return err
	}
	defer cl.Close()
	d, err := cl.Status(c.mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return err
	}
	fmt.Println(*d.NumMessages)
	return cl.Logout().Wait()
}
