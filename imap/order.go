package imap

import (
	"bytes"
	"context"
	netmail "net/mail"
	"strings"
	"sync"
	"sync/atomic"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// destination is where a handled message goes when its batch is settled.
type destination int

const (
	stay      destination = iota // left unseen in the mailbox: deferred, rate limited, failed, or never started
	processed                    // queued, held or ignored
	rejected                     // rejected, or poison
)

// job is one fetched message.
type job struct {
	uid  goimap.UID
	raw  []byte
	err  error // the message could not be read
	done chan struct{}
	dest destination // written before done is closed
}

// run is one FETCH's messages on their way through the handlers. They are
// read in UID order and handled concurrently, as far as their order
// allows: the messages of one sender one after another, so that a
// follow-up never overtakes the request it follows up; a reply only after
// every earlier message, so that the request it answers exists; and a
// message whose sender the pre-scan cannot tell only after every earlier
// message and before every later one, since it might be anyone's.
type run struct {
	p     *Poller
	ctx   context.Context
	slots chan struct{} // one per worker
	win   *window

	// halted: a message was deferred, or a failure could not be counted;
	// no further message starts. Set before the message's done closes, so
	// that the messages waiting for it see it.
	halted atomic.Bool
	wg     sync.WaitGroup

	// Read and written by the goroutine reading the FETCH only, and read
	// by the settle once wait returned.
	jobs     map[goimap.UID]*job
	fetchErr error
	byFrom   map[string]*job // each sender's latest message
	barrier  *job            // the latest message every later one waits for
	since    []*job          // the messages after barrier
	lastUID  goimap.UID
}

func (p *Poller) newRun(ctx context.Context) *run {
	return &run{
		p:      p,
		ctx:    ctx,
		slots:  make(chan struct{}, p.cfg.Workers),
		win:    newWindow(4*p.cfg.Workers, windowBytes),
		jobs:   make(map[goimap.UID]*job),
		byFrom: make(map[string]*job),
	}
}

// windowBytes bounds the bodies read ahead of the handlers: a batch of
// large messages queued behind one sender must not pile up in memory.
// At least one message is always let in, whatever its size.
const windowBytes = 32 << 20

// stopped says no further message may start: a deferral, or the poller
// is stopping (it finishes what it has started).
func (r *run) stopped() bool { return r.halted.Load() || r.ctx.Err() != nil }

// halt starts no further message.
func (r *run) halt() { r.halted.Store(true) }

// read reads the FETCH to its end and starts a handler for each message.
// It returns when the FETCH is over; handlers may still be running.
func (r *run) read(fetch *imapclient.FetchCommand) {
	limit := r.p.opt.MaxMessageBytes + 1
	for {
		// Once stopped, it stays so: the rest is only read, not kept.
		entered := !r.stopped()
		if entered {
			r.win.enter()
		}
		msg := fetch.Next()
		if msg == nil {
			if entered {
				r.win.leave(0)
			}
			break
		}
		uid, raw, err := readMessage(msg, limit)
		if uid == 0 || r.stopped() {
			if entered {
				r.win.leave(0)
			}
			if uid == 0 {
				r.p.log.Warn().Err(err).Msg("fetch response without UID ignored")
			} else {
				// Read to the end all the same: the answers to the
				// commands sent after the FETCH come after it.
				r.jobs[uid] = &job{uid: uid, dest: stay}
			}
			continue
		}
		j := &job{uid: uid, raw: raw, err: err, done: make(chan struct{})}
		r.jobs[uid] = j
		r.win.grow(int64(len(raw)))
		r.start(j, r.after(j))
	}
	r.fetchErr = fetch.Close()
}

// after returns the messages j must wait for, and records j for the
// messages after it.
func (r *run) after(j *job) []*job {
	if j.err != nil {
		// Never handed to the handler: only its failure is counted.
		return nil
	}
	from, reply := orderKey(j.raw)
	// Servers answer a FETCH in UID order; should one not, the order
	// the rules above rely on is unknown, so j goes alone.
	alone := from == "" || j.uid < r.lastUID
	r.lastUID = max(r.lastUID, j.uid)
	var deps []*job
	if r.barrier != nil {
		deps = append(deps, r.barrier)
	}
	switch {
	case alone || reply:
		deps = append(deps, r.since...)
	case r.byFrom[from] != nil:
		deps = append(deps, r.byFrom[from])
	}
	if alone {
		r.barrier, r.since = j, nil
	} else {
		r.since = append(r.since, j)
	}
	if from != "" {
		r.byFrom[from] = j
	}
	return deps
}

// start handles j in a goroutine once the messages it waits for are
// finished and a worker is free.
func (r *run) start(j *job, deps []*job) {
	size := int64(len(j.raw))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.win.leave(size)
		defer close(j.done)
		for _, d := range deps {
			<-d.done
		}
		r.slots <- struct{}{}
		defer func() { <-r.slots }()
		if !r.stopped() {
			j.dest = r.handle(j)
		}
		j.raw = nil
	}()
}

// wait returns when every handler has returned.
func (r *run) wait() { r.wg.Wait() }

// handle runs one message through ingest and says where it goes. The
// message is finished even when the poller is stopping meanwhile: its
// write must be followed by its flag or move.
func (r *run) handle(j *job) destination {
	ctx := context.WithoutCancel(r.ctx)
	o := failed
	if j.err == nil {
		o = r.p.handle(ctx, j.uid, j.raw)
	}
	switch o {
	case done:
		return processed
	case refused:
		return rejected
	case deferred:
		r.halt()
		return stay
	case later:
		// One flooding sender must not hold up everyone else's mail.
		return stay
	}
	poison, err := r.p.fail(ctx, j.uid, j.err)
	switch {
	case err != nil:
		r.p.log.Warn().Err(err).Uint32("uid", uint32(j.uid)).Msg("failure not counted: stopping")
		r.halt()
		return stay
	case poison:
		return rejected
	}
	return stay
}

// tally sorts the batch's messages, in UID order, into those to move to
// processed and to rejected, and returns the highest UID below which
// every message of the drain is settled (0: the cursor stays). gap
// carries across the batches of one drain: once a message stays, the
// cursor must not pass it, as it can no longer be found as unseen once a
// person reads it.
func (r *run) tally(uids []goimap.UID, gap *bool) (toProcessed, toRejected goimap.UIDSet, last goimap.UID) {
	for _, uid := range uids {
		j, ok := r.jobs[uid]
		switch {
		case !ok && r.fetchErr == nil:
			continue // gone from the mailbox since the search
		case !ok:
			*gap = true
		case j.dest == processed:
			toProcessed.AddNum(uid)
		case j.dest == rejected:
			toRejected.AddNum(uid)
		default:
			*gap = true
		}
		if !*gap {
			last = uid
		}
	}
	return toProcessed, toRejected, last
}

// orderKey pre-scans the header for what ordering needs: the sender's
// address, lower-cased ("" when there is no single From field), and
// whether the message answers another (In-Reply-To or References). It is
// deliberately simple; the message is parsed properly by ingest.
func orderKey(raw []byte) (from string, reply bool) {
	var froms []string
	var field string // the field the current line continues
	var value strings.Builder
	flush := func() {
		switch field {
		case "from":
			froms = append(froms, value.String())
		case "in-reply-to", "references":
			reply = reply || strings.TrimSpace(value.String()) != ""
		}
		field = ""
		value.Reset()
	}
	for rest := raw; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if field != "" {
				value.Write(line)
			}
			continue
		}
		flush()
		name, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch n := strings.ToLower(string(bytes.TrimSpace(name))); n {
		case "from", "in-reply-to", "references":
			field = n
			value.Write(v)
		}
	}
	flush()
	if len(froms) != 1 {
		return "", reply
	}
	return senderKey(froms[0]), reply
}

// senderKey is the address of a From value, lower-cased; the value itself
// when it holds no single address, so the same odd value still matches.
func senderKey(v string) string {
	if a, err := netmail.ParseAddress(v); err == nil {
		return strings.ToLower(a.Address)
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.ToLower(strings.TrimSpace(v[i+1 : i+j]))
		}
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// window bounds the messages read but not yet handled, in number and in
// bytes.
type window struct {
	mu       sync.Mutex
	cond     *sync.Cond
	n, maxN  int
	bytes    int64
	maxBytes int64
}

func newWindow(maxN int, maxBytes int64) *window {
	w := &window{maxN: maxN, maxBytes: maxBytes}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// enter waits for room for one more message.
func (w *window) enter() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.room() {
		w.cond.Wait()
	}
	w.n++
}

// room says whether one more message may enter; w.mu is held.
func (w *window) room() bool {
	return w.n == 0 || (w.n < w.maxN && w.bytes < w.maxBytes)
}

// grow accounts for the body of the message that just entered.
func (w *window) grow(size int64) {
	w.mu.Lock()
	w.bytes += size
	w.mu.Unlock()
}

// leave makes room again.
func (w *window) leave(size int64) {
	w.mu.Lock()
	w.n--
	w.bytes -= size
	w.mu.Unlock()
	w.cond.Broadcast()
}
