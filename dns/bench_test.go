package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// Benchmarks of the fall-through path: queries the packed table does not
// hold, answered by the full handler. BenchmarkFastReply (packed_test.go)
// covers the packed hot path.
//
//	go test -run '^$' -bench FallThrough -benchmem ./dns/

// fallThroughHandler serves the lookup fixture plus "many", a round-robin
// service of 60 instances: more than maxVariants rotations, so none of its
// service answers are packed.
func fallThroughHandler(b *testing.B) *Handler {
	c := newTestCatalog(b)
	fillLookup(c)
	var many []registry.Instance
	for i := range 60 {
		many = append(many, inst(fmt.Sprintf("m%02d", i), fmt.Sprintf("10.5.0.%d", i+1), uint16(7000+i)))
	}
	c.Update("many", svc("many", many...))
	opts := testOptions()
	opts.Strategy = balance.RoundRobin
	return NewHandler(c.Catalog, opts)
}

// fallThroughCases are queries the fast path hands to the full handler.
func fallThroughCases() []struct {
	name string
	q    *dns.Msg
} {
	ecs := new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA).SetEdns0(1232, false)
	ecs.IsEdns0().Option = append(ecs.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4(),
	})
	return []struct {
		name string
		q    *dns.Msg
	}{
		{"NXDOMAIN", new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeA)},
		{"RR60-SRV", new(dns.Msg).SetQuestion("many.service.local.", dns.TypeSRV)},
		{"RR60-SRV-edns", new(dns.Msg).SetQuestion("many.service.local.", dns.TypeSRV).SetEdns0(1232, false)},
		{"RR60-A", new(dns.Msg).SetQuestion("many.service.local.", dns.TypeA)},
		// A packed name, but an EDNS option the fast path does not parse.
		{"packed-name-ECS", ecs},
	}
}

// BenchmarkFallThrough is the whole per-datagram work of the UDP loop for
// a query not in the packed table, as batchWriter runs it: the fast path's
// miss, unpacking the query, the handler's reply, packing it into the send
// buffer. (It calls the steps itself rather than batchWriter, whose
// accounting fields change; the steps are the same.)
func BenchmarkFallThrough(b *testing.B) {
	h := fallThroughHandler(b)
	client := netip.MustParseAddr("127.0.0.1")
	for _, tc := range fallThroughCases() {
		pkt, err := tc.q.Pack()
		if err != nil {
			b.Fatal(err)
		}
		key, out := make([]byte, 512), make([]byte, dns.MaxMsgSize)
		if h.fastReply(pkt, out, key) != 0 {
			b.Fatalf("%s: answered by the fast path; not a fall-through case", tc.name)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if h.fastReply(pkt, out, key) != 0 {
					b.Fatal("fast path")
				}
				req := new(dns.Msg)
				if err := req.Unpack(pkt); err != nil {
					b.Fatal(err)
				}
				if m, err := h.reply(req, false, client).PackBuffer(out); err != nil || len(m) == 0 {
					b.Fatal("no reply", err)
				}
			}
		})
	}
}

// BenchmarkFallThroughReply is Handler.reply alone (no wire decoding or
// encoding) for the 60-instance round-robin service: the cost of building
// the answer as a dns.Msg.
func BenchmarkFallThroughReply(b *testing.B) {
	h := fallThroughHandler(b)
	for _, tc := range fallThroughCases()[1:4] {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = h.reply(tc.q, false, netip.Addr{})
			}
		})
	}
}

// BenchmarkRepack is what one service change costs the DNS side: the
// catalog update and the repacking of every answer of the service (each
// name, qtype, order variant and size class), for services of 3, 10 and 60
// instances with 36-character ids, as the benchmark registry has. A full
// sync pays it once per service. packed-KB/service is the size of the
// packed replies the service keeps in the table (capacity of every
// variant's bytes), distinct-KB/service what is left of it when byte-equal
// replies are stored once (size classes that cut nothing pack the same
// bytes), entries/service the number of (name, qtype) keys.
func BenchmarkRepack(b *testing.B) {
	for _, n := range []int{3, 10, 60} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			c := newTestCatalog(b)
			h := NewHandler(c.Catalog, testOptions())
			snaps := [2]*registry.Service{}
			for v := range snaps {
				var ins []registry.Instance
				for i := range n {
					ins = append(ins, inst(fmt.Sprintf("%08x-0000-4000-8000-%012x", v, i),
						fmt.Sprintf("10.6.%d.%d", i/250, i%250+1), uint16(8000+i), "version", "1.0.0"))
				}
				snaps[v] = svc("svc", ins...)
			}
			// A change, then the first queries of the service's hot names,
			// which pack their answers (packing is lazy: see packed.go).
			hot := []*dns.Msg{
				new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeSRV),
				new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeA),
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Update("svc", snaps[i%2]) // a different snapshot every time: always a change
				warm(h, hot...)
				i++
			}
			h.packed.mu.RLock()
			defer h.packed.mu.RUnlock()
			size, distinct := 0, map[string]bool{}
			for _, p := range h.packed.m {
				for _, vs := range p.variants {
					for _, v := range vs {
						size += cap(v)
						distinct[string(v)] = true
					}
				}
			}
			dsize := 0
			for v := range distinct {
				dsize += len(v)
			}
			b.ReportMetric(float64(size)/1024, "packed-KB/service")
			b.ReportMetric(float64(dsize)/1024, "distinct-KB/service")
			b.ReportMetric(float64(len(h.packed.m)), "entries/service")
		})
	}
}
