package route

import (
	"context"
	"fmt"
	"testing"
	"time"

	"mailgw/internal/redistest"
)

// BenchmarkWrite measures one queued request (4 KiB raw message, the 15
// fields of DESIGN §4) against a real redis-server on loopback.
func BenchmarkWrite(b *testing.B) {
	s := redistest.Real(b)
	st := NewStore(s.Client(b), Options{Retention: time.Hour})
	ctx := context.Background()
	r := sampleRequest("IT", "bench@example.com", "alice@example.com")
	r.Raw = sampleRaw("bench@example.com", 4096)
	if len(r.Fields) < 15 || len(r.Raw) != 4096 {
		b.Fatalf("%d fields, %d raw bytes", len(r.Fields), len(r.Raw))
	}
	b.SetBytes(int64(len(r.Raw)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r.MessageID = fmt.Sprintf("bench-%d@example.com", i)
		w, err := st.Write(ctx, r)
		if err != nil || w.Duplicate {
			b.Fatalf("Write = %+v, %v", w, err)
		}
	}
}
