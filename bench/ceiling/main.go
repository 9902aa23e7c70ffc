// Command ceiling is the reference server of the benchmarks: the fastest a
// plain miekg/dns server can answer, to compare regdns with in the same run.
//
// It loads a zone file (the one bench/seed writes, which Knot DNS serves
// too), packs one reply per (owner, type) at start, and then answers each
// query from a map keyed by the lower-cased name and the type: it copies the
// packed bytes, patches the ID and the RD bit, and writes them. Nothing is
// built per query. It runs the library's own loop (dns.Server, one UDP
// socket, a goroutine per query), so its throughput is the ceiling of
// "miekg/dns with the answer already in hand".
//
//	ceiling -listen 127.0.0.1:8054 -zonefile bench/out/work/service.local.zone
//
// An SRV reply carries the A records of its targets in the additional
// section, as regdns and Knot DNS send them. The question is echoed
// lower-cased, and replies have no OPT (the benchmark sends no EDNS).
// Names or types the zone does not have get REFUSED, built the slow way.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/miekg/dns"
)

type key struct {
	name  string // lower-case, fully qualified
	qtype uint16
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8054", "UDP address to serve")
	zoneFile := flag.String("zonefile", "", "zone file to answer from (required)")
	flag.Parse()
	if *zoneFile == "" {
		fmt.Fprintln(os.Stderr, "ceiling: -zonefile is required")
		os.Exit(2)
	}
	replies, err := load(*zoneFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}

	bufs := sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if len(r.Question) == 1 {
			q := r.Question[0]
			if packed, ok := replies[key{strings.ToLower(q.Name), q.Qtype}]; ok {
				bp := bufs.Get().(*[]byte)
				out := (*bp)[:len(packed)]
				copy(out, packed)
				out[0], out[1] = byte(r.Id>>8), byte(r.Id) // ID
				if r.RecursionDesired {                    // RD
					out[2] |= 0x01
				}
				_, _ = w.Write(out)
				bufs.Put(bp)
				return
			}
		}
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		_ = w.WriteMsg(m)
	})

	srv := &dns.Server{Addr: *listen, Net: "udp", Handler: handler,
		NotifyStartedFunc: func() {
			fmt.Fprintf(os.Stderr, "ceiling: %d packed replies, serving udp %s\n", len(replies), *listen)
		}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; _ = srv.Shutdown() }()
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

// load packs one authoritative reply per (owner, type) of the zone file.
func load(path string) (map[key][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sets := map[key][]dns.RR{}
	zp := dns.NewZoneParser(f, "", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		k := key{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		sets[k] = append(sets[k], rr)
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	replies := make(map[key][]byte, len(sets))
	for k, rrs := range sets {
		m := new(dns.Msg)
		m.SetQuestion(k.name, k.qtype)
		m.Response, m.Authoritative, m.RecursionDesired, m.Compress = true, true, false, true
		m.Answer = rrs
		if k.qtype == dns.TypeSRV {
			for _, rr := range rrs {
				m.Extra = append(m.Extra, sets[key{strings.ToLower(rr.(*dns.SRV).Target), dns.TypeA}]...)
			}
		}
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("pack %s %s: %w", k.name, dns.TypeToString[k.qtype], err)
		}
		replies[k] = b
	}
	return replies, nil
}
