package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"mailgw/config"
	"mailgw/identify"
	"mailgw/ingest"
	"mailgw/internal/redistest"
)

// BenchmarkHandleRealRedis measures one 4 KB message from a known customer
// through parse, lookups, the write script and the decision log on a real
// redis-server over loopback.
func BenchmarkHandleRealRedis(b *testing.B) {
	rdb := redistest.Real(b).Client(b)
	// One sender floods on purpose: the rate limits are off.
	cfg, err := config.Parse([]byte(testConfig + "rate: {sender: {count: -1}, space: {count: -1}}\n"))
	if err != nil {
		b.Fatal(err)
	}
	if err := identify.NewDirectory(rdb, cfg.Redis.Prefix, 0).Seed(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	h, err := ingest.New(cfg, rdb, zerolog.Nop(), ingest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("The VPN client disconnects every few minutes since the update.\r\n", 60)
	env := ingest.Envelope{Channel: ingest.ChannelSMTP, Recipients: []string{"it@example.com"}}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw := fmt.Appendf(nil, "From: Carol <carol@example.com>\r\nTo: it@example.com\r\nSubject: VPN\r\nMessage-ID: <bench-%d@example.com>\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s", i, body)
		b.SetBytes(int64(len(raw)))
		if d := h.Handle(ctx, env, raw).Decisions[0]; d.Outcome != identify.Queued {
			b.Fatalf("%+v", d)
		}
	}
}
