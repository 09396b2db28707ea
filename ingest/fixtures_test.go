package ingest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
	"mailgw/replay"
)

// corpus is a folder of .eml fixtures with its config and expectations.
type corpus struct {
	Config   string `json:"config"`
	Messages map[string]struct {
		Note      string `json:"note"`
		Decisions []struct {
			Space     string `json:"space"`
			Outcome   string `json:"outcome"`
			Reason    string `json:"reason"`
			RequestOf string `json:"request_of"`
		} `json:"decisions"`
	} `json:"messages"`
}

var corpora = []string{"../testdata/mails", "../testdata/mails/closed", "../testdata/mails/open"}

func loadCorpus(t *testing.T, dir string) (*corpus, *config.Config) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c corpus
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s/expected.json: %v", dir, err)
	}
	cfg, err := config.Load(filepath.Join(dir, c.Config))
	if err != nil {
		t.Fatal(err)
	}
	return &c, cfg
}

type backend struct {
	name string
	open func(t *testing.T) redis.UniversalClient
}

var backends = []backend{
	{"miniredis", func(t *testing.T) redis.UniversalClient { c, _ := redistest.Mini(t); return c }},
	{"redis-server", func(t *testing.T) redis.UniversalClient { return redistest.Real(t).Client(t) }},
}

var requestID = regexp.MustCompile(`^[A-Z][A-Z0-9_]*-[1-9][0-9]*$`)

// TestFixtures replays every corpus in name order on a fresh Redis and
// checks each message's decisions against expected.json, then checks that
// the streams hold exactly the queued requests.
func TestFixtures(t *testing.T) {
	for _, be := range backends {
		for _, dir := range corpora {
			t.Run(be.name+"/"+filepath.Base(dir), func(t *testing.T) {
				exp, cfg := loadCorpus(t, dir)
				rdb := be.open(t)
				ctx := context.Background()
				if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, 0).Seed(ctx, cfg); err != nil {
					t.Fatal(err)
				}
				h, err := ingest.New(cfg, rdb, zerolog.Nop(), ingest.Options{})
				if err != nil {
					t.Fatal(err)
				}
				files, err := replay.Files([]string{dir})
				if err != nil {
					t.Fatal(err)
				}
				if len(files) != len(exp.Messages) {
					t.Errorf("%d .eml files but %d expectations", len(files), len(exp.Messages))
				}
				// requests[file][space] is the request id a file's decision named.
				requests := map[string]map[string]string{}
				queued := map[string]int64{}
				err = replay.Run(ctx, h, files, nil, cfg.SMTP.MaxMessageBytes, func(r replay.Result) error {
					name := filepath.Base(r.File)
					if r.Err != nil {
						t.Errorf("%s: %v", name, r.Err)
						return nil
					}
					want, ok := exp.Messages[name]
					if !ok {
						t.Errorf("%s: no expectation", name)
						return nil
					}
					requests[name] = map[string]string{}
					if len(r.Decisions) != len(want.Decisions) {
						t.Errorf("%s: %d decisions %+v, want %d (%s)", name, len(r.Decisions), r.Decisions, len(want.Decisions), want.Note)
						return nil
					}
					for i, d := range r.Decisions {
						w := want.Decisions[i]
						if d.Space != w.Space || string(d.Outcome) != w.Outcome || string(d.Reason) != w.Reason {
							t.Errorf("%s: decision %d = %s %s %s (%s), want %s %s %s (%s)",
								name, i, d.Space, d.Outcome, d.Reason, d.Detail, w.Space, w.Outcome, w.Reason, want.Note)
							continue
						}
						requests[name][d.Space] = d.Request
						if d.Outcome == identify.Queued {
							if !requestID.MatchString(d.Request) {
								t.Errorf("%s: queued with request id %q", name, d.Request)
							}
							queued[d.Space]++
						}
						if w.RequestOf != "" {
							if of := requests[w.RequestOf][d.Space]; of == "" || of != d.Request {
								t.Errorf("%s: request %q, want the request of %s (%q)", name, d.Request, w.RequestOf, of)
							}
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				store := ingest.NewStore(cfg, rdb)
				for _, sp := range cfg.Spaces {
					n, err := rdb.XLen(ctx, store.StreamKey(sp.Key)).Result()
					if err != nil {
						t.Fatal(err)
					}
					if n != queued[sp.Key] {
						t.Errorf("space %s: %d stream entries, %d queued decisions", sp.Key, n, queued[sp.Key])
					}
				}
			})
		}
	}
}
