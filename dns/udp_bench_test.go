package dns

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/internal/balance"
)

// BenchmarkFastReplyUDP is the per-datagram work of the UDP batch loop on
// the fast path (batchWriter.answer: the packed reply and its accounting),
// without the system calls. Parallel runs one writer per goroutine, as the
// server runs one per socket.
//
//	go test -run '^$' -bench FastReply -benchmem ./dns/
func BenchmarkFastReplyUDP(b *testing.B) {
	h := packedFixture(&testing.T{}, balance.RoundRobin)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	q := new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA)
	warm(h, q)
	pkt, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		w, out := newBenchWriter(h), make([]byte, 1232)
		b.ReportAllocs()
		for b.Loop() {
			if w.answer(pkt, out, from) == 0 {
				b.Fatal("no reply")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w, out := newBenchWriter(h), make([]byte, 1232)
			for pb.Next() {
				if w.answer(pkt, out, from) == 0 {
					b.Fatal("no reply")
				}
			}
		})
	})
}

func newBenchWriter(h *Handler) *batchWriter {
	return &batchWriter{h: h, key: make([]byte, 512), batchStats: batchStats{st: h.stats.udpShard()}}
}
