package main

// The DNS conformance suite of issue 3: the real server (serve, as `regdns
// serve` runs it) over a real redis-server, queried over real UDP and TCP
// sockets, often with packets built by hand because a well-behaved library
// refuses to send what hostile or broken clients send. Each test is a table
// of cases; the comment above it names the bullet of the issue it proves.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

const (
	// silenceWait is how long a reply is waited for before a packet counts
	// as unanswered. A late reply is still caught: the probe sent next on
	// the same socket must be the first thing read back.
	silenceWait = 300 * time.Millisecond
	// replyWait bounds the wait for a reply that must come.
	replyWait = 3 * time.Second
	// fixtureNegativeTTL is dns.negative_ttl in the fixture: not the
	// positive TTL (5s), so the test tells them apart.
	fixtureNegativeTTL = 7
)

// fixture is the registry most tests serve, written the way services and
// the health checker do; every instance is healthy.
//
//	web         3 instances 10.10.0.1-3:80
//	wide        60 instances 10.11.0.1-60:9000+i (more than a UDP reply holds)
//	mixed       m-tcp 10.12.0.1:80 (no protocol: tcp), m-udp 10.12.0.2:53 (protocol udp)
//	tcponly     t1 10.13.0.1:80
func writeFixture(t *testing.T, w *registry.Writer) {
	t.Helper()
	ctx := context.Background()
	reg := func(svc, id, host string, port int, meta map[string]any) {
		t.Helper()
		require.NoError(t, w.Register(ctx, svc, id, host, port, meta, 5*time.Minute))
		require.NoError(t, w.SetHealth(ctx, svc, id, registry.StatusHealthy, time.Minute))
	}
	for i := range 3 {
		reg("web", fmt.Sprintf("w%d", i+1), fmt.Sprintf("10.10.0.%d", i+1), 80, nil)
	}
	for i := range 60 {
		reg("wide", fmt.Sprintf("n%02d", i), fmt.Sprintf("10.11.0.%d", i+1), 9000+i, nil)
	}
	reg("mixed", "m-tcp", "10.12.0.1", 80, nil)
	reg("mixed", "m-udp", "10.12.0.2", 53, map[string]any{"protocol": "udp"})
	reg("tcponly", "t1", "10.13.0.1", 80, nil)
}

// startFixture runs a redis-server with the fixture registry and regdns over
// it (negative TTL 7s, then mutate), ready to answer.
func startFixture(t *testing.T, mutate func(*config.Config)) *regdnsUnderTest {
	t.Helper()
	rs := redistest.Start(t)
	writeFixture(t, registry.NewWriter(rs.Client(t), registry.DefaultKeys()))
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Log.Level = "info"
		c.DNS.NegativeTTL = config.Duration{Duration: fixtureNegativeTTL * time.Second}
		if mutate != nil {
			mutate(c)
		}
	})
	// A service appears whole: one answer means every instance is there.
	for _, name := range []string{"web", "wide", "mixed", "tcponly"} {
		r.waitFor(t, name+".service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
	}
	waitSynced(t, r, "service.local.")
	return r
}

// waitSynced waits until the registry view of zone is in sync: a name that
// does not exist is NXDOMAIN, no longer SERVFAIL.
func waitSynced(t *testing.T, r *regdnsUnderTest, zone string) {
	t.Helper()
	r.waitFor(t, "no-such-service."+zone, dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
}

// Wire helpers: one socket, messages framed for its transport.

type wireConn struct {
	net.Conn
	tcp bool
}

func dialWire(t *testing.T, network, addr string) *wireConn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, replyWait)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &wireConn{Conn: c, tcp: network == "tcp"}
}

// frame is msg as written on a TCP stream: a two-octet length, then msg.
func tcpFrame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// send writes one message (framed over TCP). Errors are returned, not
// fatal: writing to a connection the server closed is part of some tests.
func (c *wireConn) send(msg []byte) error {
	if c.tcp {
		msg = tcpFrame(msg)
	}
	_, err := c.Write(msg)
	return err
}

// recv reads one message within d.
func (c *wireConn) recv(d time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	if !c.tcp {
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		return buf[:n], err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, buf)
	return buf, err
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func packMsg(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

func unpackMsg(t *testing.T, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	require.NoError(t, m.Unpack(b), "reply does not parse: % x", b)
	return m
}

// ask sends q over network on a fresh socket and returns the reply and its
// size on the wire.
func askOnce(t *testing.T, network, addr string, q *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	c := dialWire(t, network, addr)
	require.NoError(t, c.send(packMsg(t, q)))
	b, err := c.recv(replyWait)
	require.NoError(t, err, "%s %s over %s", q.Question, dns.OpcodeToString[q.Opcode], network)
	m := unpackMsg(t, b)
	require.Equal(t, q.Id, m.Id)
	return m, len(b)
}

func newQuery(name string, qtype uint16) *dns.Msg { return new(dns.Msg).SetQuestion(name, qtype) }

func withEDNS(m *dns.Msg, size uint16, do bool, options ...dns.EDNS0) *dns.Msg {
	m.SetEdns0(size, do)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, options...)
	return m
}

// Hand-made packets.

const (
	flagQR = 1 << 15
	flagRD = 1 << 8
)

func rawHeader(id, flags, qd, an, ns, ar uint16) []byte {
	var b []byte
	for _, v := range []uint16{id, flags, qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func opcodeFlags(op int) uint16 { return uint16(op) << 11 }

// question is a question in wire format; name keeps its case.
func rawQuestion(t *testing.T, name string, qtype, qclass uint16) []byte {
	t.Helper()
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	require.NoError(t, err)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(buf[:n], qtype), qclass)
}

// optRR is an OPT record: root owner, TYPE 41, CLASS the UDP size, TTL the
// extended rcode, version and DO bit, then the raw options.
func rawOPT(size uint16, version uint8, do bool, options []byte) []byte {
	b := []byte{0}
	b = binary.BigEndian.AppendUint16(b, dns.TypeOPT)
	b = binary.BigEndian.AppendUint16(b, size)
	flags := uint16(0)
	if do {
		flags = 1 << 15
	}
	b = append(b, 0, version)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(len(options)))
	return append(b, options...)
}

func joinBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Expectations of a hand-made packet.
const (
	wantSilence          = -1 // no reply at all
	wantFormerrOrSilence = -2 // FORMERR or nothing, as the RFCs allow
)

// TestConformanceMalformedAndUnusualQueries: QDCOUNT other than 1, the QR
// bit, garbage and truncated packets get FORMERR or silence, never a crash or
// a hang; unknown opcodes and NOTIFY get NOTIMP; classes other than IN get
// REFUSED. After every packet the server still answers, on the same socket.
func TestConformanceMalformedAndUnusualQueries(t *testing.T) {
	t.Parallel()
	r := startFixture(t, nil)
	webA := rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassINET)
	valid := joinBytes(rawHeader(0x1001, flagRD, 1, 0, 0, 0), webA)
	opt := rawOPT(1232, 0, false, nil)
	// A compression pointer to itself: a name that never ends.
	loop := joinBytes(rawHeader(0x1002, 0, 1, 0, 0, 0), []byte{0xC0, 12, 0, 1, 0, 1})
	// Garbage after the header of a query (opcode QUERY, QR clear): what
	// follows the header is not a question and the counts are nonsense.
	garbage := make([]byte, 64)
	for i := range garbage {
		garbage[i] = byte(i*151 + 7)
	}
	garbage[2], garbage[3] = 0x01, 0x00
	for _, tc := range []struct {
		name string
		pkt  []byte
		want int // an rcode, wantSilence or wantFormerrOrSilence
		opt  bool
	}{
		{"valid query", valid, dns.RcodeSuccess, false},
		{"QDCOUNT 0", rawHeader(0x2001, flagRD, 0, 0, 0, 0), wantFormerrOrSilence, false},
		{"QDCOUNT 0 with OPT", joinBytes(rawHeader(0x2002, flagRD, 0, 0, 0, 1), opt), wantFormerrOrSilence, true},
		{"QDCOUNT 2", joinBytes(rawHeader(0x2003, flagRD, 2, 0, 0, 0), webA, webA), wantFormerrOrSilence, false},
		{"QDCOUNT 2 with OPT", joinBytes(rawHeader(0x2004, flagRD, 2, 0, 0, 1), webA, webA, opt), wantFormerrOrSilence, true},
		{"QDCOUNT 1 without a question", rawHeader(0x2005, flagRD, 1, 0, 0, 0), wantFormerrOrSilence, false},
		{"QR set", joinBytes(rawHeader(0x2006, flagQR|flagRD, 1, 0, 0, 0), webA), wantSilence, false},
		{"QR set with OPT", joinBytes(rawHeader(0x2007, flagQR, 1, 0, 0, 1), webA, opt), wantSilence, false},
		{"QR set, QDCOUNT 0", rawHeader(0x2008, flagQR, 0, 0, 0, 0), wantSilence, false},
		{"empty packet", []byte{}, wantSilence, false},
		{"3 octets", []byte{0x20, 0x09, 0x01}, wantSilence, false},
		{"11 octets", valid[:11], wantSilence, false},
		{"garbage", garbage, wantFormerrOrSilence, false},
		{"truncated in the name", valid[:17], wantFormerrOrSilence, false},
		{"truncated in the type", valid[:len(valid)-3], wantFormerrOrSilence, false},
		{"truncated OPT", joinBytes(rawHeader(0x200A, 0, 1, 0, 0, 1), webA, opt[:5]), wantFormerrOrSilence, false},
		{"compression loop", loop, wantFormerrOrSilence, false},
		{"label longer than 63", joinBytes(rawHeader(0x200B, 0, 1, 0, 0, 0), []byte{64}, bytes.Repeat([]byte{'a'}, 64), []byte{0, 0, 1, 0, 1}), wantFormerrOrSilence, false},
		{"two OPT records", joinBytes(rawHeader(0x200C, flagRD, 1, 0, 0, 2), webA, opt, opt), dns.RcodeFormatError, true}, // RFC 6891 6.1.1
		{"opcode 1 IQUERY", joinBytes(rawHeader(0x3001, opcodeFlags(dns.OpcodeIQuery), 1, 0, 0, 0), webA), dns.RcodeNotImplemented, false},
		{"opcode 2 STATUS", joinBytes(rawHeader(0x3002, opcodeFlags(dns.OpcodeStatus), 1, 0, 0, 0), webA), dns.RcodeNotImplemented, false},
		{"opcode 4 NOTIFY", joinBytes(rawHeader(0x3003, opcodeFlags(dns.OpcodeNotify), 1, 0, 0, 0), rawQuestion(t, "service.local.", dns.TypeSOA, dns.ClassINET)), dns.RcodeNotImplemented, false},
		{"opcode 4 NOTIFY with OPT", joinBytes(rawHeader(0x3004, opcodeFlags(dns.OpcodeNotify), 1, 0, 0, 1), rawQuestion(t, "service.local.", dns.TypeSOA, dns.ClassINET), opt), dns.RcodeNotImplemented, true},
		{"opcode 5 UPDATE", joinBytes(rawHeader(0x3005, opcodeFlags(dns.OpcodeUpdate), 1, 0, 0, 0), rawQuestion(t, "service.local.", dns.TypeSOA, dns.ClassINET)), dns.RcodeNotImplemented, false},
		{"opcode 5 UPDATE with OPT", joinBytes(rawHeader(0x3006, opcodeFlags(dns.OpcodeUpdate), 1, 0, 0, 1), rawQuestion(t, "service.local.", dns.TypeSOA, dns.ClassINET), opt), dns.RcodeNotImplemented, true},
		{"opcode 15", joinBytes(rawHeader(0x3007, opcodeFlags(15), 1, 0, 0, 0), webA), dns.RcodeNotImplemented, false},
		{"class CH", joinBytes(rawHeader(0x4001, flagRD, 1, 0, 0, 0), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassCHAOS)), dns.RcodeRefused, false},
		{"class CH version.bind TXT", joinBytes(rawHeader(0x4002, flagRD, 1, 0, 0, 0), rawQuestion(t, "version.bind.", dns.TypeTXT, dns.ClassCHAOS)), dns.RcodeRefused, false},
		{"class HS", joinBytes(rawHeader(0x4003, flagRD, 1, 0, 0, 0), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassHESIOD)), dns.RcodeRefused, false},
		{"class ANY", joinBytes(rawHeader(0x4004, flagRD, 1, 0, 0, 0), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassANY)), dns.RcodeRefused, false},
		{"class ANY with OPT", joinBytes(rawHeader(0x4005, flagRD, 1, 0, 0, 1), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassANY), opt), dns.RcodeRefused, true},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+" over "+network, func(t *testing.T) {
				t.Parallel() // each waits for silence on its own socket
				replies := sendThenProbe(t, network, r.addr, tc.pkt, tc.want < 0)
				if tc.want == wantSilence {
					require.Empty(t, replies, "no reply to a packet that is not a query")
					return
				}
				if tc.want == wantFormerrOrSilence && len(replies) == 0 {
					return
				}
				require.Len(t, replies, 1)
				m := unpackMsg(t, replies[0])
				want := tc.want
				if want == wantFormerrOrSilence {
					want = dns.RcodeFormatError
				}
				require.Equal(t, dns.RcodeToString[want], dns.RcodeToString[m.Rcode])
				require.True(t, m.Response, "QR set")
				require.Equal(t, binary.BigEndian.Uint16(tc.pkt), m.Id, "the query's ID")
				if tc.opt {
					require.NotNil(t, m.IsEdns0(), "OPT in the reply to a query with OPT (RFC 6891 6.1.1)")
				}
				if want == dns.RcodeNotImplemented {
					require.Equal(t, int(tc.pkt[2]>>3&0xF), m.Opcode, "the opcode echoed")
				}
			})
		}
	}
}

// sendThenProbe writes pkt, collects what comes back (waiting silenceWait
// when no reply may come, else replyWait), then sends a valid query on the
// same socket and requires its answer. It returns the replies to pkt,
// including one that came late, before the probe's. A TCP connection the
// server closed after pkt is replaced for the probe.
func sendThenProbe(t *testing.T, network, addr string, pkt []byte, maySilence bool) [][]byte {
	t.Helper()
	c := dialWire(t, network, addr)
	require.NoError(t, c.send(pkt))
	wait := replyWait
	if maySilence {
		wait = silenceWait
	}
	var replies [][]byte
	b, err := c.recv(wait)
	switch {
	case err == nil:
		replies = append(replies, b)
	case isTimeout(err):
	case c.tcp:
		c = dialWire(t, network, addr) // the server closed the connection: allowed
	default:
		require.NoError(t, err)
	}
	probe := newQuery("web.service.local.", dns.TypeA)
	probe.Id = 0xBEEF
	require.NoError(t, c.send(packMsg(t, probe)))
	for {
		b, err := c.recv(replyWait)
		require.NoError(t, err, "the server answers after the packet")
		if m := new(dns.Msg); m.Unpack(b) == nil && m.Id == probe.Id {
			require.Equal(t, dns.RcodeSuccess, m.Rcode)
			require.Len(t, m.Answer, 3)
			return replies
		}
		replies = append(replies, b)
	}
}

// TestConformanceEDNS: OPT in every reply to an EDNS query, BADVERS for
// version 1, unknown options ignored, the advertised size honoured and capped
// at dns.max_udp_size, the DO bit tolerated, EDNS Client Subnet echoed with
// scope 0.
func TestConformanceEDNS(t *testing.T) {
	t.Parallel()
	r := startFixture(t, nil)
	ecs4 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("192.0.2.0").To4()}
	ecs6 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: net.ParseIP("2001:db8:1:200::")}
	unknown := &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("regdns")}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"}
	for _, tc := range []struct {
		name    string
		network string
		q       *dns.Msg
		rcode   int
		check   func(t *testing.T, m *dns.Msg, size int)
	}{
		{name: "NOERROR", q: withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, false), rcode: dns.RcodeSuccess},
		{name: "NOERROR over TCP", network: "tcp", q: withEDNS(newQuery("web.service.local.", dns.TypeSRV), 1232, false), rcode: dns.RcodeSuccess},
		{name: "NXDOMAIN", q: withEDNS(newQuery("nope.service.local.", dns.TypeA), 1232, false), rcode: dns.RcodeNameError},
		{name: "NODATA", q: withEDNS(newQuery("web.service.local.", dns.TypeTXT), 1232, false), rcode: dns.RcodeSuccess},
		{name: "REFUSED outside the zone", q: withEDNS(newQuery("example.com.", dns.TypeA), 1232, false), rcode: dns.RcodeRefused},
		{name: "REFUSED AXFR", network: "tcp", q: withEDNS(new(dns.Msg).SetAxfr("service.local."), 1232, false), rcode: dns.RcodeRefused},
		{name: "ANY", q: withEDNS(newQuery("web.service.local.", dns.TypeANY), 1232, false), rcode: dns.RcodeSuccess},
		{name: "version 1 is BADVERS", q: func() *dns.Msg {
			m := withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), rcode: dns.RcodeBadVers, check: func(t *testing.T, m *dns.Msg, _ int) {
			require.Empty(t, m.Answer)
			require.Equal(t, uint8(0), m.IsEdns0().Version(), "the OPT of BADVERS carries our version, 0")
		}},
		{name: "version 1 over TCP is BADVERS", network: "tcp", q: func() *dns.Msg {
			m := withEDNS(newQuery("nope.service.local.", dns.TypeA), 1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), rcode: dns.RcodeBadVers},
		{name: "unknown option ignored", q: withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, false, unknown), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) {
				require.Len(t, m.Answer, 3)
				for _, o := range m.IsEdns0().Option {
					require.NotEqual(t, unknown.Code, o.Option(), "an unknown option is not echoed")
				}
			}},
		{name: "cookie ignored", q: withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, false, cookie), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) { require.Len(t, m.Answer, 3) }},
		{name: "DO bit tolerated and echoed", q: withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, true), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) {
				require.Len(t, m.Answer, 3)
				require.True(t, m.IsEdns0().Do(), "DO copied into the reply (RFC 3225 3)")
			}},
		{name: "DO bit on NXDOMAIN", q: withEDNS(newQuery("nope.service.local.", dns.TypeA), 1232, true), rcode: dns.RcodeNameError},
		{name: "ECS IPv4 echoed with scope 0", q: withEDNS(newQuery("web.service.local.", dns.TypeA), 1232, false, ecs4), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) { requireECS(t, m, ecs4) }},
		{name: "ECS IPv6 echoed with scope 0", network: "tcp", q: withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 1232, false, ecs6), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) { requireECS(t, m, ecs6) }},
		{name: "ECS on REFUSED", q: withEDNS(newQuery("example.com.", dns.TypeA), 1232, false, ecs4), rcode: dns.RcodeRefused},
		{name: "size 4096 capped at 1232", q: withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 4096, false), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, size int) {
				require.True(t, m.Truncated, "60 SRV and glue do not fit 1232 octets")
				require.LessOrEqual(t, size, 1232)
				require.Greater(t, size, 1000, "the room there is, is used")
				require.Equal(t, uint16(1232), m.IsEdns0().UDPSize(), "we advertise our maximum")
			}},
		{name: "size 700 honoured", q: withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 700, false), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, size int) {
				require.True(t, m.Truncated)
				require.LessOrEqual(t, size, 700)
				require.Greater(t, size, 512)
			}},
		{name: "size below 512 means 512", q: withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 100, false), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, size int) {
				require.True(t, m.Truncated)
				require.LessOrEqual(t, size, 512)
				require.Greater(t, size, 400)
			}},
		{name: "EDNS size is no limit over TCP", network: "tcp", q: withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 1232, false), rcode: dns.RcodeSuccess,
			check: func(t *testing.T, m *dns.Msg, _ int) {
				require.False(t, m.Truncated)
				require.Len(t, m.Answer, 60)
			}},
	} {
		if tc.network == "" {
			tc.network = "udp"
		}
		t.Run(tc.name, func(t *testing.T) {
			m, size := askOnce(t, tc.network, r.addr, tc.q)
			require.Equal(t, dns.RcodeToString[tc.rcode], dns.RcodeToString[m.Rcode])
			require.NotNil(t, m.IsEdns0(), "OPT in every reply to an EDNS query")
			require.Equal(t, tc.q.Question, m.Question)
			if tc.check != nil {
				tc.check(t, m, size)
			}
		})
	}

	t.Run("FORMERR carries OPT", func(t *testing.T) {
		for _, qd := range []uint16{0, 2} {
			pkt := joinBytes(rawHeader(0x5000+qd, flagRD, qd, 0, 0, 1))
			for range qd {
				pkt = joinBytes(pkt, rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassINET))
			}
			pkt = joinBytes(pkt, rawOPT(1232, 0, false, nil))
			c := dialWire(t, "udp", r.addr)
			require.NoError(t, c.send(pkt))
			b, err := c.recv(replyWait)
			require.NoError(t, err, "QDCOUNT %d with OPT", qd)
			m := unpackMsg(t, b)
			require.Equal(t, dns.RcodeFormatError, m.Rcode, "QDCOUNT %d", qd)
			require.NotNil(t, m.IsEdns0(), "QDCOUNT %d: the OPT parsed, so the reply carries one", qd)
		}
	})

	t.Run("dns.max_udp_size 4096", func(t *testing.T) {
		t.Parallel()
		big := startFixture(t, func(c *config.Config) { c.DNS.MaxUDPSize = 4096 })
		m, size := askOnce(t, "udp", big.addr, withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 4096, false))
		require.False(t, m.Truncated, "60 SRV and glue fit 4096 octets")
		require.Len(t, m.Answer, 60)
		require.Len(t, m.Extra, 61, "60 glue records and OPT")
		require.Greater(t, size, 1232)
		require.LessOrEqual(t, size, 4096)
		require.Equal(t, uint16(4096), m.IsEdns0().UDPSize())
		m, size = askOnce(t, "udp", big.addr, withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 1232, false))
		require.True(t, m.Truncated, "the client's smaller size is honoured")
		require.LessOrEqual(t, size, 1232)
		m, size = askOnce(t, "udp", big.addr, withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 65000, false))
		require.Len(t, m.Answer, 60)
		require.LessOrEqual(t, size, 4096, "capped at dns.max_udp_size")
	})
}

func requireECS(t *testing.T, m *dns.Msg, sent *dns.EDNS0_SUBNET) {
	t.Helper()
	for _, o := range m.IsEdns0().Option {
		if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
			require.Equal(t, sent.Family, ecs.Family)
			require.Equal(t, sent.SourceNetmask, ecs.SourceNetmask)
			require.Equal(t, uint8(0), ecs.SourceScope, "scope 0: the answer does not depend on the subnet (RFC 7871 7.2.1)")
			require.True(t, sent.Address.Equal(ecs.Address), "address %v echoed, got %v", sent.Address, ecs.Address)
			return
		}
	}
	t.Fatalf("no ECS option in the reply:\n%v", m)
}

// TestConformanceTruncation: an SRV answer lists every serving instance and
// sets TC over UDP when it does not fit; TCP then has them all. A/AAAA
// answers keep at most dns.max_answers records and never need TC. A TCP
// answer never exceeds 65,535 octets, even for 10,000 instances.
func TestConformanceTruncation(t *testing.T) {
	t.Parallel()
	t.Run("60 instances", func(t *testing.T) {
		t.Parallel()
		r := startFixture(t, nil)
		for _, tc := range []struct {
			name, network string
			q             *dns.Msg
			truncated     bool
			answers       int // -1: some, fewer than all
			maxSize       int
		}{
			{"SRV over UDP", "udp", newQuery("wide.service.local.", dns.TypeSRV), true, -1, 512},
			{"SRV over UDP with EDNS", "udp", withEDNS(newQuery("wide.service.local.", dns.TypeSRV), 1232, false), true, -1, 1232},
			{"SRV over TCP", "tcp", newQuery("wide.service.local.", dns.TypeSRV), false, 60, 65535},
			{"_wide._tcp SRV over UDP", "udp", newQuery("_wide._tcp.service.local.", dns.TypeSRV), true, -1, 512},
			{"_wide._tcp SRV over TCP", "tcp", newQuery("_wide._tcp.service.local.", dns.TypeSRV), false, 60, 65535},
			{"A over UDP", "udp", newQuery("wide.service.local.", dns.TypeA), false, 8, 512},
			{"A over UDP with EDNS", "udp", withEDNS(newQuery("wide.service.local.", dns.TypeA), 4096, false), false, 8, 1232},
			{"A over TCP", "tcp", newQuery("wide.service.local.", dns.TypeA), false, 8, 65535},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m, size := askOnce(t, tc.network, r.addr, tc.q)
				require.Equal(t, dns.RcodeSuccess, m.Rcode)
				require.Equal(t, tc.truncated, m.Truncated, "TC")
				require.LessOrEqual(t, size, tc.maxSize)
				if tc.answers < 0 {
					require.NotEmpty(t, m.Answer)
					require.Less(t, len(m.Answer), 60)
				} else {
					require.Len(t, m.Answer, tc.answers)
				}
				if tc.q.Question[0].Qtype == dns.TypeSRV && !m.Truncated {
					require.Len(t, withoutOPT(m.Extra), len(m.Answer), "glue for every target")
				}
			})
		}
	})

	t.Run("dns.max_answers 3", func(t *testing.T) {
		t.Parallel()
		r := startFixture(t, func(c *config.Config) { c.DNS.MaxAnswers = 3 })
		m, _ := askOnce(t, "udp", r.addr, newQuery("wide.service.local.", dns.TypeA))
		require.Len(t, m.Answer, 3)
		require.False(t, m.Truncated)
		m, _ = askOnce(t, "tcp", r.addr, newQuery("wide.service.local.", dns.TypeSRV))
		require.Len(t, m.Answer, 60, "SRV answers are never capped")
	})

	t.Run("10,000 instances", func(t *testing.T) {
		t.Parallel()
		rs := redistest.Start(t)
		registerBulk(t, rs.Client(t), registry.DefaultKeys(), "huge", 10_000)
		r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Log.Level = "info"; c.Health.Mode = "any" })
		r.waitFor(t, "huge.service.local.", dns.TypeA, 20*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 8 })
		c := dialWire(t, "tcp", r.addr)
		q := newQuery("huge.service.local.", dns.TypeSRV)
		require.NoError(t, c.send(packMsg(t, q)))
		b, err := c.recv(replyWait)
		require.NoError(t, err)
		require.LessOrEqual(t, len(b), dns.MaxMsgSize)
		m := unpackMsg(t, b)
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
		require.Equal(t, q.Question, m.Question)
		require.Greater(t, len(m.Answer), 1000, "cut to what fits, not to nothing")
		require.Less(t, len(m.Answer), 10_000)
		for _, rr := range m.Answer {
			require.IsType(t, &dns.SRV{}, rr)
		}
		t.Logf("10,000 instances over TCP: %d SRV records in %d octets", len(m.Answer), len(b))
		// The connection still carries queries after the biggest reply.
		require.NoError(t, c.send(packMsg(t, newQuery("huge.service.local.", dns.TypeA))))
		b, err = c.recv(replyWait)
		require.NoError(t, err)
		require.Len(t, unpackMsg(t, b).Answer, 8)

		m, size := askOnce(t, "udp", r.addr, newQuery("huge.service.local.", dns.TypeSRV))
		require.True(t, m.Truncated)
		require.LessOrEqual(t, size, 512)
	})
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
}

// registerBulk writes n instances of service, 10.100.x.y, the way the
// writers do (instance JSON with SETEX, then SADD), in pipelines.
func registerBulk(t *testing.T, client *redis.Client, keys registry.Keys, service string, n int) {
	t.Helper()
	ctx := context.Background()
	now := float64(time.Now().UnixNano()) / 1e9
	for start := 0; start < n; start += 1000 {
		_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			ids := make([]any, 0, 1000)
			for i := start; i < min(start+1000, n); i++ {
				id := fmt.Sprintf("i%05d", i)
				doc, err := json.Marshal(map[string]any{
					"service_name": service, "instance_id": id, "host": fmt.Sprintf("10.100.%d.%d", i/250, i%250+1),
					"port": 8000 + i%1000, "metadata": map[string]any{}, "registered_at": now, "last_heartbeat": now,
				})
				if err != nil {
					return err
				}
				p.SetEx(ctx, keys.Instance(service, id), doc, 5*time.Minute)
				ids = append(ids, id)
			}
			p.SAdd(ctx, keys.Set(service), ids...)
			return nil
		})
		require.NoError(t, err)
	}
}

// TestConformanceTCP (RFC 7766): pipelined queries on one connection all
// answered; framing under partial writes; the idle timeout; the bound on
// concurrent connections, with UDP answering meanwhile.
func TestConformanceTCP(t *testing.T) {
	t.Parallel()
	t.Run("pipelined and partial writes", func(t *testing.T) {
		t.Parallel()
		r := startFixture(t, nil)
		type pq struct {
			q     *dns.Msg
			rcode int
		}
		var queries []pq
		for i, c := range []struct {
			name  string
			qtype uint16
			rcode int
		}{
			{"web.service.local.", dns.TypeA, dns.RcodeSuccess},
			{"wide.service.local.", dns.TypeSRV, dns.RcodeSuccess},
			{"nope.service.local.", dns.TypeA, dns.RcodeNameError},
			{"_mixed._udp.service.local.", dns.TypeSRV, dns.RcodeSuccess},
			{"service.local.", dns.TypeSOA, dns.RcodeSuccess},
			{"example.com.", dns.TypeA, dns.RcodeRefused},
			{"web.service.local.", dns.TypeAAAA, dns.RcodeSuccess},
			{"w1.web.service.local.", dns.TypeA, dns.RcodeSuccess},
			{"web.service.local.", dns.TypeANY, dns.RcodeSuccess},
			{"tcponly.service.local.", dns.TypeSRV, dns.RcodeSuccess},
		} {
			q := newQuery(c.name, c.qtype)
			q.Id = uint16(100 + i)
			queries = append(queries, pq{q, c.rcode})
		}

		t.Run("pipelined", func(t *testing.T) {
			c := dialWire(t, "tcp", r.addr)
			var stream []byte
			for _, p := range queries {
				stream = append(stream, tcpFrame(packMsg(t, p.q))...)
			}
			_, err := c.Write(stream) // every query before any reply is read
			require.NoError(t, err)
			got := map[uint16]*dns.Msg{}
			for range queries {
				b, err := c.recv(replyWait)
				require.NoError(t, err)
				m := unpackMsg(t, b)
				require.NotContains(t, got, m.Id, "one reply per query")
				got[m.Id] = m
			}
			for _, p := range queries {
				m := got[p.q.Id]
				require.NotNil(t, m, "reply to %v", p.q.Question)
				require.Equal(t, p.q.Question, m.Question)
				require.Equal(t, dns.RcodeToString[p.rcode], dns.RcodeToString[m.Rcode], "%v", p.q.Question)
			}
		})

		t.Run("framing under partial writes", func(t *testing.T) {
			c := dialWire(t, "tcp", r.addr)
			// One octet per write: the length prefix, then the message.
			for _, p := range queries[:3] {
				for _, b := range tcpFrame(packMsg(t, p.q)) {
					_, err := c.Write([]byte{b})
					require.NoError(t, err)
				}
				b, err := c.recv(replyWait)
				require.NoError(t, err)
				m := unpackMsg(t, b)
				require.Equal(t, p.q.Id, m.Id)
				require.Equal(t, p.rcode, m.Rcode)
			}
			// Writes cutting across messages: a length split from its
			// message, two messages sharing a write.
			var stream []byte
			for _, p := range queries[3:6] {
				stream = append(stream, tcpFrame(packMsg(t, p.q))...)
			}
			for _, cut := range [][2]int{{0, 1}, {1, 5}, {5, 40}, {40, len(stream) - 3}, {len(stream) - 3, len(stream)}} {
				_, err := c.Write(stream[cut[0]:cut[1]])
				require.NoError(t, err)
			}
			for _, p := range queries[3:6] {
				b, err := c.recv(replyWait)
				require.NoError(t, err)
				m := unpackMsg(t, b)
				require.Equal(t, p.q.Id, m.Id, "replies in order on one connection")
				require.Equal(t, p.rcode, m.Rcode)
			}
		})
	})

	t.Run("idle timeout", func(t *testing.T) {
		t.Parallel()
		r := startFixture(t, func(c *config.Config) { c.DNS.TCPIdleTimeout = config.Duration{Duration: 300 * time.Millisecond} })
		c := dialWire(t, "tcp", r.addr)
		require.NoError(t, c.send(packMsg(t, newQuery("web.service.local.", dns.TypeA))))
		_, err := c.recv(replyWait)
		require.NoError(t, err)
		idle := time.Now()
		_, err = c.recv(5 * time.Second)
		require.ErrorIs(t, err, io.EOF, "the server closes an idle connection")
		took := time.Since(idle)
		require.GreaterOrEqual(t, took, 200*time.Millisecond, "not before dns.tcp_idle_timeout")
		require.Less(t, took, 3*time.Second, "soon after dns.tcp_idle_timeout")
		t.Logf("idle connection closed after %v (dns.tcp_idle_timeout 300ms)", took)
	})

	t.Run("connection bound", func(t *testing.T) {
		t.Parallel()
		r := startFixture(t, func(c *config.Config) { c.DNS.MaxTCPConnections = 3 })
		tcpQuery := func(c *wireConn) error {
			if err := c.send(packMsg(t, newQuery("web.service.local.", dns.TypeA))); err != nil {
				return err
			}
			b, err := c.recv(replyWait)
			if err != nil {
				return err
			}
			if m := new(dns.Msg); m.Unpack(b) != nil || len(m.Answer) != 3 {
				return fmt.Errorf("bad reply % x", b)
			}
			return nil
		}
		held := make([]*wireConn, 3)
		for i := range held {
			held[i] = dialWire(t, "tcp", r.addr)
			require.NoError(t, tcpQuery(held[i]), "connection %d of 3", i+1)
		}
		// One more is closed at once, not left waiting.
		extra := dialWire(t, "tcp", r.addr)
		start := time.Now()
		_ = extra.send(packMsg(t, newQuery("web.service.local.", dns.TypeA)))
		_, err := extra.recv(replyWait)
		require.Error(t, err)
		require.False(t, isTimeout(err), "connection over the bound closed, not left hanging: %v", err)
		require.Less(t, time.Since(start), 2*time.Second)
		// UDP keeps answering meanwhile, and so do the connections held.
		m, _ := askOnce(t, "udp", r.addr, newQuery("web.service.local.", dns.TypeA))
		require.Len(t, m.Answer, 3)
		for i, c := range held {
			require.NoError(t, tcpQuery(c), "held connection %d", i+1)
		}
		// A slot freed is a slot taken again.
		require.NoError(t, held[0].Close())
		require.Eventually(t, func() bool {
			c, err := net.DialTimeout("tcp", r.addr, replyWait)
			if err != nil {
				return false
			}
			defer c.Close()
			return tcpQuery(&wireConn{Conn: c, tcp: true}) == nil
		}, 5*time.Second, 10*time.Millisecond)
	})
}

// TestConformanceNames: the case of the question echoed exactly (0x20);
// names compressed; negative answers cacheable with the SOA (TTL = MINIMUM
// = dns.negative_ttl); ANY answered per RFC 8482; RFC 2782 names; names
// outside the zone REFUSED without forwarding.
func TestConformanceNames(t *testing.T) {
	t.Parallel()
	r := startFixture(t, nil)

	t.Run("0x20 case echoed exactly", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			qtype uint16
			rcode int
		}{
			{"WeB.SeRvIcE.LoCaL.", dns.TypeA, dns.RcodeSuccess},
			{"wIdE.sErViCe.LoCaL.", dns.TypeSRV, dns.RcodeSuccess},
			{"W1.wEb.SERVICE.local.", dns.TypeA, dns.RcodeSuccess},
			{"_MiXeD._UdP.SeRvIcE.LoCaL.", dns.TypeSRV, dns.RcodeSuccess},
			{"NoPe.SeRvIcE.LoCaL.", dns.TypeA, dns.RcodeNameError},
			{"WeB.SeRvIcE.LoCaL.", dns.TypeTXT, dns.RcodeSuccess},
			{"ExAmPlE.CoM.", dns.TypeA, dns.RcodeRefused},
		} {
			for _, network := range []string{"udp", "tcp"} {
				for _, edns := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s %s %s edns=%t", tc.name, dns.TypeToString[tc.qtype], network, edns), func(t *testing.T) {
						q := newQuery(tc.name, tc.qtype)
						if edns {
							q.SetEdns0(1232, false)
						}
						raw := packMsg(t, q)
						qend := 12 + len(rawQuestion(t, tc.name, tc.qtype, dns.ClassINET))
						c := dialWire(t, network, r.addr)
						require.NoError(t, c.send(raw))
						b, err := c.recv(replyWait)
						require.NoError(t, err)
						require.GreaterOrEqual(t, len(b), qend)
						require.Equal(t, raw[12:qend], b[12:qend], "the question, octet for octet")
						m := unpackMsg(t, b)
						require.Equal(t, tc.rcode, m.Rcode)
						require.Equal(t, tc.name, m.Question[0].Name)
					})
				}
			}
		}
	})

	t.Run("names compressed", func(t *testing.T) {
		for _, tc := range []struct {
			network string
			q       *dns.Msg
			ratio   float64 // the packed reply is at most this share of its uncompressed size
		}{
			{"udp", newQuery("web.service.local.", dns.TypeA), 0.75},
			// SRV targets are never compressed (RFC 2782); the glue points at them.
			{"udp", newQuery("web.service.local.", dns.TypeSRV), 0.7},
			{"tcp", newQuery("wide.service.local.", dns.TypeSRV), 0.7},
			{"udp", withEDNS(newQuery("mixed.service.local.", dns.TypeSRV), 1232, false), 0.75},
			{"udp", newQuery("nope.service.local.", dns.TypeA), 0.9},
		} {
			t.Run(tc.network+" "+tc.q.Question[0].String(), func(t *testing.T) {
				m, size := askOnce(t, tc.network, r.addr, tc.q)
				m.Compress = false
				plain := len(packMsg(t, m))
				require.LessOrEqual(t, float64(size), tc.ratio*float64(plain),
					"%d octets on the wire, %d uncompressed", size, plain)
			})
		}
	})

	soa := func(t *testing.T) string {
		// The serial is the second of the last change, and moves on to the
		// next second when changes came within the one it names: wait until
		// it names a second already past, after which it is settled.
		var s *dns.SOA
		require.Eventually(t, func() bool {
			m, _ := askOnce(t, "udp", r.addr, newQuery("service.local.", dns.TypeSOA))
			require.Len(t, m.Answer, 1)
			s = m.Answer[0].(*dns.SOA)
			return int64(s.Serial) < time.Now().Unix()
		}, 5*time.Second, 20*time.Millisecond, "the serial settles")
		require.Equal(t, uint32(fixtureNegativeTTL), s.Minttl)
		require.Equal(t, uint32(fixtureNegativeTTL), s.Hdr.Ttl)
		return fmt.Sprintf("service.local. %d IN SOA ns.service.local. hostmaster.service.local. %d 3600 600 86400 %d",
			fixtureNegativeTTL, s.Serial, fixtureNegativeTTL)
	}

	t.Run("answers", func(t *testing.T) {
		SOA := soa(t)
		for _, tc := range []dnstest.Case{
			// Negative answers: SOA in authority, TTL = MINIMUM = dns.negative_ttl (RFC 2308).
			{Name: "NXDOMAIN", Qname: "nope.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "NXDOMAIN below an instance", Qname: "x.w1.web.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "NODATA", Qname: "web.service.local.", Qtype: dns.TypeTXT, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "NODATA AAAA", Qname: "w1.web.service.local.", Qtype: dns.TypeAAAA, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "NODATA with EDNS", Qname: "web.service.local.", Qtype: dns.TypeMX, UDPSize: 1232, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			// RFC 8482: one HINFO, never the whole name.
			{Name: "ANY on a service", Qname: "web.service.local.", Qtype: dns.TypeANY, Authoritative: true,
				Answer: dnstest.RRs(t, `web.service.local. 5 IN HINFO "RFC8482" ""`)},
			{Name: "ANY on a big service", Qname: "wide.service.local.", Qtype: dns.TypeANY, Authoritative: true,
				Answer: dnstest.RRs(t, `wide.service.local. 5 IN HINFO "RFC8482" ""`)},
			{Name: "ANY on an instance", Qname: "w1.web.service.local.", Qtype: dns.TypeANY, Authoritative: true,
				Answer: dnstest.RRs(t, `w1.web.service.local. 5 IN HINFO "RFC8482" ""`)},
			{Name: "ANY at the apex", Qname: "service.local.", Qtype: dns.TypeANY, Authoritative: true,
				Answer: dnstest.RRs(t, `service.local. 5 IN HINFO "RFC8482" ""`)},
			{Name: "ANY on a name that does not exist", Qname: "nope.service.local.", Qtype: dns.TypeANY, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			// RFC 2782: the protocol from metadata "protocol" (default tcp); the other is NODATA.
			{Name: "_mixed._tcp", Qname: "_mixed._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
				Answer: dnstest.RRs(t, "_mixed._tcp.service.local. 5 IN SRV 1 1 80 m-tcp.mixed.service.local."),
				Extra:  dnstest.RRs(t, "m-tcp.mixed.service.local. 5 IN A 10.12.0.1")},
			{Name: "_mixed._udp", Qname: "_mixed._udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
				Answer: dnstest.RRs(t, "_mixed._udp.service.local. 5 IN SRV 1 1 53 m-udp.mixed.service.local."),
				Extra:  dnstest.RRs(t, "m-udp.mixed.service.local. 5 IN A 10.12.0.2")},
			{Name: "mixed: both protocols", Qname: "mixed.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
				Answer: dnstest.RRs(t, "mixed.service.local. 5 IN SRV 1 1 80 m-tcp.mixed.service.local.",
					"mixed.service.local. 5 IN SRV 1 1 53 m-udp.mixed.service.local."),
				Extra: dnstest.RRs(t, "m-tcp.mixed.service.local. 5 IN A 10.12.0.1", "m-udp.mixed.service.local. 5 IN A 10.12.0.2")},
			{Name: "_tcponly._tcp", Qname: "_tcponly._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
				Answer: dnstest.RRs(t, "_tcponly._tcp.service.local. 5 IN SRV 1 1 80 t1.tcponly.service.local."),
				Extra:  dnstest.RRs(t, "t1.tcponly.service.local. 5 IN A 10.13.0.1")},
			{Name: "_tcponly._udp is NODATA", Qname: "_tcponly._udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "_tcponly._tcp A is NODATA", Qname: "_tcponly._tcp.service.local.", Qtype: dns.TypeA, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "_tcp.service.local. is an empty non-terminal", Qname: "_tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			{Name: "_nope._tcp is NXDOMAIN", Qname: "_nope._tcp.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
			// Without dns.forward, names outside the zone are REFUSED: never an open resolver.
			{Name: "outside the zone", Qname: "example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
			{Name: "the parent of the zone", Qname: "local.", Qtype: dns.TypeSOA, Rcode: dns.RcodeRefused},
			{Name: "the root", Qname: ".", Qtype: dns.TypeNS, Rcode: dns.RcodeRefused},
		} {
			for _, network := range []string{"udp", "tcp"} {
				t.Run(tc.String()+" over "+network, func(t *testing.T) {
					m := dnstest.Exchange(t, r.addr, tc.Msg(), network)
					dnstest.Check(t, m, tc)
					require.False(t, m.RecursionAvailable, "RA: no recursion without dns.forward")
					if tc.UDPSize != 0 {
						require.NotNil(t, m.IsEdns0())
					}
				})
			}
		}
	})
}

// TestConformanceSerial: the SOA serial grows with every registry change and
// stays monotonic across a restart of regdns, being time-based: a new
// process starts from the clock, and loading the registry does not push the
// serial ahead of it.
func TestConformanceSerial(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	for i := range 20 {
		require.NoError(t, w.Register(ctx, fmt.Sprintf("s%02d", i), "a", fmt.Sprintf("10.40.0.%d", i+1), 80, nil, 5*time.Minute))
	}
	start := func(t *testing.T) *regdnsUnderTest {
		r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Log.Level = "info"; c.Health.Mode = "any" })
		waitSynced(t, r, "service.local.")
		for i := range 20 {
			r.waitFor(t, fmt.Sprintf("s%02d.service.local.", i), dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
		}
		return r
	}
	serial := func(t *testing.T, r *regdnsUnderTest) uint32 {
		m, _ := askOnce(t, "udp", r.addr, newQuery("service.local.", dns.TypeSOA))
		require.Len(t, m.Answer, 1)
		return m.Answer[0].(*dns.SOA).Serial
	}
	// notAhead: a time-based serial is not ahead of the clock once the
	// registry is loaded; so a restart, which starts from the clock, cannot
	// go below it.
	notAhead := func(t *testing.T, s uint32) {
		require.LessOrEqual(t, s, uint32(time.Now().Unix()),
			"serial %d is ahead of the clock after loading 20 services: a restart now would lower it", s)
	}

	var last uint32
	t.Run("first run", func(t *testing.T) {
		r := start(t)
		s0 := serial(t, r)
		notAhead(t, s0)
		// Every change is followed by a new serial (within a second: the
		// serial is a time).
		s := s0
		for i, change := range []func() error{
			func() error { return w.Register(ctx, "s00", "b", "10.40.1.1", 80, nil, 5*time.Minute) },
			func() error { return w.Deregister(ctx, "s00", "b") },
			func() error { return w.Register(ctx, "s01", "b", "10.40.1.2", 80, nil, 5*time.Minute) },
		} {
			require.NoError(t, change())
			prev := s
			r.waitFor(t, "service.local.", dns.TypeSOA, 5*time.Second, func(m *dns.Msg) bool {
				if len(m.Answer) != 1 {
					return false
				}
				s = m.Answer[0].(*dns.SOA).Serial
				require.GreaterOrEqual(t, s, prev, "change %d: the serial never goes back", i+1)
				return s > prev
			})
		}
		last = s
	})
	// The first process has stopped; a new one starts at once.
	t.Run("after a restart", func(t *testing.T) {
		r := start(t)
		s := serial(t, r)
		require.GreaterOrEqual(t, s, last, "monotonic across a restart")
		notAhead(t, s)
	})
}

// TestConformanceTransfer: AXFR/IXFR are REFUSED unless allowed for the
// client's network (dns.transfer_allow); then a full transfer of the current
// view, starting and ending with the SOA.
func TestConformanceTransfer(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T, allow []string) *regdnsUnderTest {
		rs := redistest.Start(t)
		w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
		ctx := context.Background()
		for _, in := range []struct {
			svc, id, host string
			port          int
			meta          map[string]any
		}{
			{"alpha", "a1", "10.30.0.1", 80, nil},
			{"alpha", "a2", "10.30.0.2", 53, map[string]any{"protocol": "udp", "weight": 5}},
			{"beta", "b1", "beta.example.org", 443, nil},
		} {
			require.NoError(t, w.Register(ctx, in.svc, in.id, in.host, in.port, in.meta, 5*time.Minute))
			require.NoError(t, w.SetHealth(ctx, in.svc, in.id, registry.StatusHealthy, time.Minute))
		}
		r := startRegdns(t, rs.URL(), func(c *config.Config) {
			c.Log.Level = "info"
			c.DNS.TransferAllow = allow
		})
		r.waitFor(t, "alpha.service.local.", dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		r.waitFor(t, "beta.service.local.", dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
		waitSynced(t, r, "service.local.")
		return r
	}
	ixfr := func() *dns.Msg {
		return new(dns.Msg).SetIxfr("service.local.", 1, "ns.service.local.", "hostmaster.service.local.")
	}

	t.Run("refused by default", func(t *testing.T) {
		t.Parallel()
		r := start(t, nil)
		for _, tc := range []struct {
			name, network string
			q             *dns.Msg
		}{
			{"AXFR over TCP", "tcp", new(dns.Msg).SetAxfr("service.local.")},
			{"AXFR over UDP", "udp", new(dns.Msg).SetAxfr("service.local.")},
			{"IXFR over TCP", "tcp", ixfr()},
			{"IXFR over UDP", "udp", ixfr()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m, _ := askOnce(t, tc.network, r.addr, tc.q)
				require.Equal(t, dns.RcodeToString[dns.RcodeRefused], dns.RcodeToString[m.Rcode])
				require.Empty(t, m.Answer)
			})
		}
		ch, err := (&dns.Transfer{}).In(new(dns.Msg).SetAxfr("service.local."), r.addr)
		require.NoError(t, err)
		env, ok := <-ch
		require.True(t, ok)
		require.Error(t, env.Error, "a refused transfer is an error to the client")
		require.Empty(t, env.RR)
	})

	t.Run("allowed for 127.0.0.0/8", func(t *testing.T) {
		t.Parallel()
		r := start(t, []string{"127.0.0.0/8"})
		serial := func() uint32 {
			m, _ := askOnce(t, "udp", r.addr, newQuery("service.local.", dns.TypeSOA))
			return m.Answer[0].(*dns.SOA).Serial
		}()
		want := []string{
			"service.local. 5 IN NS ns.service.local.",
			"ns.service.local. 5 IN A 127.0.0.1",
			"alpha.service.local. 5 IN SRV 1 1 80 a1.alpha.service.local.",
			"alpha.service.local. 5 IN SRV 1 5 53 a2.alpha.service.local.",
			"alpha.service.local. 5 IN A 10.30.0.1",
			"alpha.service.local. 5 IN A 10.30.0.2",
			"_alpha._tcp.service.local. 5 IN SRV 1 1 80 a1.alpha.service.local.",
			"_alpha._udp.service.local. 5 IN SRV 1 5 53 a2.alpha.service.local.",
			"a1.alpha.service.local. 5 IN A 10.30.0.1",
			"a2.alpha.service.local. 5 IN A 10.30.0.2",
			"beta.service.local. 5 IN SRV 1 1 443 beta.example.org.",
			"_beta._tcp.service.local. 5 IN SRV 1 1 443 beta.example.org.",
			"b1.beta.service.local. 5 IN CNAME beta.example.org.",
		}
		for _, tc := range []struct {
			name string
			q    *dns.Msg
		}{
			{"AXFR", new(dns.Msg).SetAxfr("service.local.")},
			{"IXFR answered with a full transfer", ixfr()},
			{"AXFR, zone name in another case", new(dns.Msg).SetAxfr("SeRvIcE.LoCaL.")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ch, err := (&dns.Transfer{}).In(tc.q, r.addr)
				require.NoError(t, err)
				var rrs []dns.RR
				for env := range ch {
					require.NoError(t, env.Error)
					rrs = append(rrs, env.RR...)
				}
				require.GreaterOrEqual(t, len(rrs), 2)
				first, ok := rrs[0].(*dns.SOA)
				require.True(t, ok, "a transfer starts with the SOA, got %v", rrs[0])
				last, ok := rrs[len(rrs)-1].(*dns.SOA)
				require.True(t, ok, "a transfer ends with the SOA, got %v", rrs[len(rrs)-1])
				require.Equal(t, first.String(), last.String())
				require.GreaterOrEqual(t, first.Serial, serial, "the serial never goes back (it may move on to the next second)")
				require.ElementsMatch(t, dnstest.Strings(dnstest.RRs(t, want...)), dnstest.Strings(rrs[1:len(rrs)-1]),
					"every record of the current view, once")
			})
		}
		// Over UDP a transfer is refused even to an allowed client.
		m, _ := askOnce(t, "udp", r.addr, new(dns.Msg).SetAxfr("service.local."))
		require.Equal(t, dns.RcodeRefused, m.Rcode)
	})
}

// fakeUpstream is a tiny resolver for forwarding tests: example.test. A, and
// big.example.test. TXT which is truncated over UDP. It counts its queries.
type fakeUpstream struct {
	addr     string
	udp, tcp atomic.Int64
}

func startFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		_, tcp := w.LocalAddr().(*net.TCPAddr)
		if tcp {
			u.tcp.Add(1)
		} else {
			u.udp.Add(1)
		}
		m := new(dns.Msg).SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		switch strings.ToLower(q.Name) {
		case "example.test.":
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.10")})
		case "big.example.test.":
			if !tcp {
				m.Truncated = true
				break
			}
			for i := range 40 {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
					Txt: []string{fmt.Sprintf("record %02d %s", i, strings.Repeat("x", 40))}})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	require.Eventually(t, func() bool {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return false
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			return false
		}
		return true
	}, 5*time.Second, 10*time.Millisecond)
	u.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the shutdowns below: cleanups run last in, first out
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

// TestConformanceForwarding: names outside the zones go to dns.forward for
// the clients dns.forward_allow lists (loopback by default): answered with
// RA, cached, retried over TCP when the upstream truncates; other clients are
// REFUSED. Without dns.forward they are REFUSED (TestConformanceNames).
func TestConformanceForwarding(t *testing.T) {
	t.Parallel()
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		up := startFakeUpstream(t)
		r := startFixture(t, func(c *config.Config) { c.DNS.Forward = []string{up.addr} })
		for _, tc := range []struct {
			name, network string
			q             *dns.Msg
			check         func(t *testing.T, m *dns.Msg)
			udpHits       int64 // the upstream's count after the query
			tcpHits       int64
		}{
			{"forwarded", "udp", newQuery("example.test.", dns.TypeA), func(t *testing.T, m *dns.Msg) {
				require.Equal(t, dns.RcodeSuccess, m.Rcode)
				require.Len(t, m.Answer, 1)
				require.Equal(t, "192.0.2.10", m.Answer[0].(*dns.A).A.String())
				require.True(t, m.RecursionAvailable, "RA")
				require.False(t, m.Authoritative, "not our zone")
			}, 1, 0},
			{"repeated: from the cache", "udp", newQuery("example.test.", dns.TypeA), func(t *testing.T, m *dns.Msg) {
				require.Len(t, m.Answer, 1)
				require.True(t, m.RecursionAvailable)
				require.LessOrEqual(t, m.Answer[0].Header().Ttl, uint32(60))
			}, 1, 0},
			{"other case, over TCP, with EDNS: from the cache", "tcp", withEDNS(newQuery("ExAmPlE.TeSt.", dns.TypeA), 1232, false), func(t *testing.T, m *dns.Msg) {
				require.Len(t, m.Answer, 1)
				require.Equal(t, "ExAmPlE.TeSt.", m.Question[0].Name)
				require.NotNil(t, m.IsEdns0(), "our OPT on a forwarded reply")
			}, 1, 0},
			{"truncated upstream: retried over TCP", "tcp", newQuery("big.example.test.", dns.TypeTXT), func(t *testing.T, m *dns.Msg) {
				require.Equal(t, dns.RcodeSuccess, m.Rcode)
				require.Len(t, m.Answer, 40)
				require.False(t, m.Truncated)
			}, 2, 1},
			{"big answer to a UDP client: TC from us", "udp", newQuery("big.example.test.", dns.TypeTXT), func(t *testing.T, m *dns.Msg) {
				require.True(t, m.Truncated)
			}, 2, 1},
			{"NXDOMAIN forwarded", "udp", newQuery("nope.example.test.", dns.TypeA), func(t *testing.T, m *dns.Msg) {
				require.Equal(t, dns.RcodeNameError, m.Rcode)
				require.True(t, m.RecursionAvailable)
			}, 3, 1},
			{"NXDOMAIN without SOA is not cached (RFC 2308 5)", "udp", newQuery("nope.example.test.", dns.TypeA), func(t *testing.T, m *dns.Msg) {
				require.Equal(t, dns.RcodeNameError, m.Rcode)
			}, 4, 1},
			{"the zone is still ours", "udp", newQuery("web.service.local.", dns.TypeA), func(t *testing.T, m *dns.Msg) {
				require.True(t, m.Authoritative)
				require.Len(t, m.Answer, 3)
			}, 4, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m, _ := askOnce(t, tc.network, r.addr, tc.q)
				require.Equal(t, tc.q.Question, m.Question)
				tc.check(t, m)
				require.Equal(t, tc.udpHits, up.udp.Load(), "upstream queries over UDP")
				require.Equal(t, tc.tcpHits, up.tcp.Load(), "upstream queries over TCP")
			})
		}
	})

	t.Run("client not in dns.forward_allow", func(t *testing.T) {
		t.Parallel()
		up := startFakeUpstream(t)
		r := startFixture(t, func(c *config.Config) {
			c.DNS.Forward = []string{up.addr}
			c.DNS.ForwardAllow = []string{"192.0.2.0/24"}
		})
		for _, network := range []string{"udp", "tcp"} {
			m, _ := askOnce(t, network, r.addr, newQuery("example.test.", dns.TypeA))
			require.Equal(t, dns.RcodeToString[dns.RcodeRefused], dns.RcodeToString[m.Rcode], network)
			require.Empty(t, m.Answer)
		}
		m, _ := askOnce(t, "udp", r.addr, newQuery("web.service.local.", dns.TypeA))
		require.Len(t, m.Answer, 3, "the zone is answered to everyone")
		require.Zero(t, up.udp.Load()+up.tcp.Load(), "the upstream was never asked")
	})
}

// TestConformanceZones: two zones at once, service.local over the default
// key prefixes and service.internal over "svc2"/"health2" of the same Redis,
// each answering from its own registry only.
func TestConformanceZones(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	local := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	internal := registry.NewWriter(rs.Client(t), registry.Keys{Prefix: "svc2", HealthPrefix: "health2"})
	require.NoError(t, local.Register(ctx, "alpha", "a1", "10.20.0.1", 80, nil, 5*time.Minute))
	require.NoError(t, local.SetHealth(ctx, "alpha", "a1", registry.StatusHealthy, time.Minute))
	require.NoError(t, internal.Register(ctx, "alpha", "a2", "10.21.0.2", 81, nil, 5*time.Minute))
	require.NoError(t, internal.SetHealth(ctx, "alpha", "a2", registry.StatusHealthy, time.Minute))
	require.NoError(t, internal.Register(ctx, "beta", "b1", "10.21.0.1", 82, nil, 5*time.Minute))
	require.NoError(t, internal.SetHealth(ctx, "beta", "b1", registry.StatusHealthy, time.Minute))
	// Healthy in its own registry only: health keys are per zone too.
	require.NoError(t, local.Register(ctx, "gamma", "g1", "10.20.0.3", 83, nil, 5*time.Minute))
	require.NoError(t, internal.SetHealth(ctx, "gamma", "g1", registry.StatusHealthy, time.Minute))
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Log.Level = "info"
		c.Zones = []config.Zone{{Name: "service.internal", Prefix: "svc2", HealthPrefix: "health2"}}
	})
	r.waitFor(t, "alpha.service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	r.waitFor(t, "beta.service.internal.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	waitSynced(t, r, "service.local.")
	waitSynced(t, r, "service.internal.")

	soaOf := func(zone string) string {
		m, _ := askOnce(t, "udp", r.addr, newQuery(zone, dns.TypeSOA))
		require.Len(t, m.Answer, 1, zone)
		return m.Answer[0].String()
	}
	localSOA, internalSOA := soaOf("service.local."), soaOf("service.internal.")
	require.Contains(t, internalSOA, "service.internal.\t5\tIN\tSOA\tns.service.internal. hostmaster.service.internal.")
	for _, tc := range []dnstest.Case{
		{Qname: "alpha.service.local.", Qtype: dns.TypeA, Authoritative: true, Answer: dnstest.RRs(t, "alpha.service.local. 5 IN A 10.20.0.1")},
		{Qname: "alpha.service.internal.", Qtype: dns.TypeA, Authoritative: true, Answer: dnstest.RRs(t, "alpha.service.internal. 5 IN A 10.21.0.2")},
		{Qname: "alpha.service.internal.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: dnstest.RRs(t, "alpha.service.internal. 5 IN SRV 1 1 81 a2.alpha.service.internal."),
			Extra:  dnstest.RRs(t, "a2.alpha.service.internal. 5 IN A 10.21.0.2")},
		{Qname: "_alpha._tcp.service.internal.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: dnstest.RRs(t, "_alpha._tcp.service.internal. 5 IN SRV 1 1 81 a2.alpha.service.internal."),
			Extra:  dnstest.RRs(t, "a2.alpha.service.internal. 5 IN A 10.21.0.2")},
		{Qname: "a2.alpha.service.internal.", Qtype: dns.TypeA, Authoritative: true, Answer: dnstest.RRs(t, "a2.alpha.service.internal. 5 IN A 10.21.0.2")},
		{Qname: "beta.service.internal.", Qtype: dns.TypeA, Authoritative: true, Answer: dnstest.RRs(t, "beta.service.internal. 5 IN A 10.21.0.1")},
		{Name: "a2 is not in service.local", Qname: "a2.alpha.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, localSOA)},
		{Name: "a1 is not in service.internal", Qname: "a1.alpha.service.internal.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, internalSOA)},
		{Name: "beta is not in service.local", Qname: "beta.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, localSOA)},
		{Name: "gamma: healthy only in the other registry", Qname: "gamma.service.local.", Qtype: dns.TypeA, Authoritative: true, Ns: dnstest.RRs(t, localSOA)},
		{Name: "gamma is not in service.internal", Qname: "gamma.service.internal.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, internalSOA)},
		{Qname: "service.internal.", Qtype: dns.TypeNS, Authoritative: true, Answer: dnstest.RRs(t, "service.internal. 5 IN NS ns.service.internal.")},
		{Name: "a sibling zone is not ours", Qname: "service.external.", Qtype: dns.TypeSOA, Rcode: dns.RcodeRefused},
	} {
		t.Run(tc.String(), func(t *testing.T) {
			dnstest.Check(t, dnstest.Exchange(t, r.addr, tc.Msg(), "udp"), tc)
		})
	}
}
