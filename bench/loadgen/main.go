// Command loadgen sends DNS queries over UDP at a fixed rate and reports the
// latency of every answer: average, p50, p90, p99, p99.9 and max. It is the
// latency half of the benchmarks (dnsperf 2.10 reports only the average and
// the standard deviation).
//
//	loadgen -server 127.0.0.1:8053 -queries queries.txt -qps 20000 -duration 15s
//
// It is open-loop: a sender paces queries by the clock, whatever the
// server does, sending what is due at each wake-up in one sendmmsg on the
// next of -sockets connected sockets (different source ports, so
// SO_REUSEPORT servers spread them), and one receiver per socket reads
// replies with recvmmsg and matches them by ID. A query's latency runs from
// just before its send to just after its reply was read. A query
// unanswered within -timeout after the last send is lost. The query file is
// dnsperf's: "name type" per line, sent in order, round and round.
//
// With -probe NAME it sends one query (-type, default SRV) and prints the
// reply's rcode, answer count and size; it exits 1 when there is no NOERROR
// reply with answers. The benchmark script uses it to wait for servers.
//
// Output: one human line on stderr and one JSON object on stdout.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

type result struct {
	Server    string  `json:"server"`
	TargetQPS float64 `json:"target_qps"`
	SentQPS   float64 `json:"sent_qps"`
	Sent      int64   `json:"sent"`
	Answered  int64   `json:"answered"`
	Lost      int64   `json:"lost"`
	Errors    int64   `json:"errors"` // answers with an rcode other than NOERROR
	AvgMs     float64 `json:"avg_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
}

func main() {
	server := flag.String("server", "127.0.0.1:8053", "DNS server (UDP)")
	queries := flag.String("queries", "", "query file: 'name type' per line")
	qps := flag.Float64("qps", 10000, "queries per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	sockets := flag.Int("sockets", 8, "UDP sockets (source ports)")
	timeout := flag.Duration("timeout", time.Second, "a query unanswered this long is lost")
	probe := flag.String("probe", "", "send one query for this name and exit")
	qtype := flag.String("type", "SRV", "query type of -probe")
	flag.Parse()
	if *probe != "" {
		os.Exit(runProbe(*server, *probe, *qtype, *timeout))
	}
	msgs, err := readQueries(*queries)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if *qps <= 0 || *duration <= 0 || *sockets <= 0 || *sockets > 1024 {
		fmt.Fprintln(os.Stderr, "loadgen: -qps, -duration and -sockets must be positive (sockets <= 1024)")
		os.Exit(2)
	}
	r, err := run(*server, msgs, *qps, *duration, *sockets, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "loadgen %s: %.0f qps sent (target %.0f), %d answered, %d lost, %d errors; latency ms avg %.3f p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
		r.Server, r.SentQPS, r.TargetQPS, r.Answered, r.Lost, r.Errors, r.AvgMs, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// readQueries packs each line of the query file (ID 0, RD set as dnsperf does).
func readQueries(path string) ([][]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("-queries is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		t := dns.TypeA
		if len(fields) > 1 {
			var ok bool
			if t, ok = dns.StringToType[strings.ToUpper(fields[1])]; !ok {
				return nil, fmt.Errorf("unknown type %q", fields[1])
			}
		}
		b, err := new(dns.Msg).SetQuestion(dns.Fqdn(fields[0]), t).Pack()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, sc.Err()
}

// batch bounds the datagrams of one sendmmsg or recvmmsg.
const batch = 64

// flight is one socket: its conn, the send time of each outstanding ID
// (nanoseconds since start, 0 when none) and what its receiver measured.
type flight struct {
	conn     *net.UDPConn
	pc       *ipv4.PacketConn
	sentAt   [65536]atomic.Int64
	nextID   uint16
	out      []ipv4.Message
	lat      []int64 // receiver-owned until it returns
	errors   int64
	answered int64
}

func run(server string, msgs [][]byte, qps float64, duration time.Duration, sockets int, timeout time.Duration) (result, error) {
	addr, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return result{}, err
	}
	total := int64(qps * duration.Seconds())
	flights := make([]*flight, sockets)
	for i := range flights {
		c, err := net.DialUDP("udp4", nil, addr)
		if err != nil {
			return result{}, err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		f := &flight{conn: c, pc: ipv4.NewPacketConn(c), lat: make([]int64, 0, total/int64(sockets)+1024)}
		f.out = make([]ipv4.Message, batch)
		for j := range f.out {
			f.out[j].Buffers = [][]byte{make([]byte, 512)}
		}
		flights[i] = f
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, f := range flights {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.receive(start)
		}()
	}

	// Sender: at each wake-up, send every query that is due by the clock,
	// in one sendmmsg on the next socket (batches of at most 64).
	var sent int64
	turn := 0
	for sent < total {
		due := min(int64(time.Since(start).Seconds()*qps)+1, total)
		for sent < due {
			f := flights[turn%sockets]
			turn++
			k := int(min(due-sent, batch))
			now := int64(time.Since(start))
			for j := range k {
				q := msgs[(sent+int64(j))%int64(len(msgs))]
				b := f.out[j].Buffers[0][:len(q)]
				copy(b, q)
				binary.BigEndian.PutUint16(b, f.nextID)
				f.out[j].Buffers[0] = b
				// An ID still outstanding here (65,536 sends on this socket
				// ago, far past -timeout at any rate we run) is simply lost.
				f.sentAt[f.nextID].Store(now)
				f.nextID++
			}
			for done := 0; done < k; {
				n, err := f.pc.WriteBatch(f.out[done:k], 0)
				if err != nil {
					break // the rest is lost
				}
				done += n
			}
			sent += int64(k)
		}
		if next := time.Duration(float64(sent) / qps * float64(time.Second)); next > time.Since(start) {
			time.Sleep(next - time.Since(start))
		}
	}
	sendTime := time.Since(start)
	time.Sleep(timeout) // the last replies
	for _, f := range flights {
		_ = f.conn.SetReadDeadline(time.Now())
	}
	wg.Wait()
	for _, f := range flights {
		f.conn.Close()
	}

	r := result{Server: server, TargetQPS: qps, Sent: sent, SentQPS: float64(sent) / sendTime.Seconds()}
	var all []int64
	for _, f := range flights {
		all = append(all, f.lat...)
		r.Errors += f.errors
		r.Answered += f.answered
	}
	r.Lost = r.Sent - r.Answered
	if len(all) == 0 {
		return r, nil
	}
	slices.Sort(all)
	var sum float64
	for _, l := range all {
		sum += float64(l)
	}
	ms := func(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }
	pct := func(p float64) float64 { return ms(float64(all[min(int(p*float64(len(all))), len(all)-1)])) }
	r.AvgMs = ms(sum / float64(len(all)))
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	r.MaxMs = ms(float64(all[len(all)-1]))
	return r, nil
}

// receive reads replies, in batches, until the read deadline set at the end.
func (f *flight) receive(start time.Time) {
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	for {
		n, err := f.pc.ReadBatch(in, 0)
		now := int64(time.Since(start))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return
			}
			if strings.Contains(err.Error(), "closed") {
				return
			}
			continue // ICMP port unreachable and the like
		}
		for _, m := range in[:n] {
			buf := m.Buffers[0][:m.N]
			if len(buf) < 12 || buf[2]&0x80 == 0 {
				continue
			}
			t := f.sentAt[binary.BigEndian.Uint16(buf)].Swap(0)
			if t == 0 {
				continue // a duplicate, or the reply to a query whose ID was reused
			}
			f.answered++
			f.lat = append(f.lat, now-t)
			if buf[3]&0x0F != dns.RcodeSuccess {
				f.errors++
			}
		}
	}
}

func runProbe(server, name, qtype string, timeout time.Duration) int {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadgen: unknown type %q\n", qtype)
		return 2
	}
	q, err := new(dns.Msg).SetQuestion(dns.Fqdn(name), t).Pack()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	conn, err := net.Dial("udp", server)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	buf := make([]byte, 65535)
	n := 0
	if _, err = conn.Write(q); err == nil {
		n, err = conn.Read(buf)
	}
	rtt := time.Since(start)
	m := new(dns.Msg)
	if err == nil {
		err = m.Unpack(buf[:n])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	fmt.Printf("%s %s %s: %s, %d answers, %d authority, %d additional, %d octets, %v\n", server, name, qtype,
		dns.RcodeToString[m.Rcode], len(m.Answer), len(m.Ns), len(m.Extra), n, rtt.Round(time.Microsecond))
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		return 1
	}
	return 0
}
