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

// BenchmarkFallThrough is the whole UDP datagram path of batchWriter for
// queries not in the packed table: the fast path's miss, unpacking the
// query, the handler's reply, packing it into the send buffer.
func BenchmarkFallThrough(b *testing.B) {
	h := fallThroughHandler(b)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	for _, tc := range fallThroughCases() {
		pkt, err := tc.q.Pack()
		if err != nil {
			b.Fatal(err)
		}
		w := &batchWriter{h: h, key: make([]byte, 512)}
		out := make([]byte, dns.MaxMsgSize)
		if h.fastReply(pkt, out, w.key) != 0 {
			b.Fatalf("%s: answered by the fast path; not a fall-through case", tc.name)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w.answer(pkt, out, from) == 0 {
					b.Fatal("no reply")
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
