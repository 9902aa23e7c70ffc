package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// UDP is served by several sockets bound to one port with SO_REUSEPORT (the
// kernel spreads clients over them), each read and written in batches
// (recvmmsg/sendmmsg through x/net's ReadBatch/WriteBatch) by one goroutine.
// Each query is tried on the packed fast path first and otherwise answered
// by the full handler, in the same goroutine: no answer waits on Redis.

// udpBatch is how many datagrams one system call reads or writes at most.
const udpBatch = 64

// udpReadSize bounds a query; larger datagrams are not queries we answer.
const udpReadSize = 4096

// udpSocketBuffer is the socket buffer asked for, each way: enough for a
// burst (about 10,000 queries), not so much that an overloaded server
// queues queries for longer than a resolver waits (dropping is better then:
// the client retries).
const udpSocketBuffer = 1 << 20

// queued reports whether a datagram waits in c's receive queue (SIOCINQ).
// It asks the socket directly: a read past its deadline would not.
func queued(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); cerr != nil || err != nil {
		return false
	}
	return n > 0
}

// udpDrain bounds how long a socket keeps answering what it holds once the
// server shuts down.
const udpDrain = 100 * time.Millisecond

// batchConn is the part of ipv4.PacketConn and ipv6.PacketConn we use.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// reusePort is a ListenConfig whose sockets share their port.
var reusePort = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}}

// udpServer serves queries on its sockets until they are closed.
type udpServer struct {
	h        *Handler
	conns    []*net.UDPConn
	wg       sync.WaitGroup
	stopping atomic.Bool
	// rrl limits responses per client prefix; nil when off.
	rrl *rrl
}

func (s *udpServer) start() {
	for _, c := range s.conns {
		s.wg.Add(1)
		go s.serve(c)
	}
}

// shutdown stops reading, lets every goroutine write the replies of the
// batch in hand, and closes the sockets (at the latest when ctx ends).
func (s *udpServer) shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	for _, c := range s.conns {
		_ = c.SetReadDeadline(time.Now()) // wakes a blocked ReadBatch
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	for _, c := range s.conns {
		c.Close()
	}
	return err
}

func (s *udpServer) serve(c *net.UDPConn) {
	defer s.wg.Done()
	var bc batchConn = ipv4.NewPacketConn(c)
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		bc = ipv6.NewPacketConn(c)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		out[i].Buffers = [][]byte{make([]byte, dns.MaxMsgSize)}
	}
	w := &batchWriter{h: s.h, key: make([]byte, 512), batchStats: batchStats{st: s.h.stats.udpShard()}}
	// Shutting down, the socket answers what it holds, then closes the
	// moment it holds nothing. A query left in the queue of a closed socket
	// is lost without a word; one arriving after the close is refused (ICMP
	// port unreachable: the client moves on at once), or taken by a socket
	// of the port still open.
	var drainUntil time.Time // set once shutting down
	for {
		if !drainUntil.IsZero() && (!queued(c) || time.Now().After(drainUntil)) {
			c.Close()
			return
		}
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if s.stopping.Load() {
				if drainUntil.IsZero() {
					drainUntil = time.Now().Add(udpDrain)
				}
				// Reads of what is queued return at once, the last read
				// at the latest when the drain ends (again, should this
				// have raced with shutdown's own deadline).
				_ = c.SetReadDeadline(drainUntil)
			}
			continue // or a transient error (e.g. ICMP-induced): keep serving
		}
		start := time.Now() // the batch is timed once, for all its replies (stats.go)
		k := 0
		for i := range in[:n] {
			m := &in[i]
			if m.Flags&unix.MSG_TRUNC != 0 {
				continue // larger than any query we answer
			}
			verdict := rrlSend
			if s.rrl != nil {
				if verdict = s.rrl.check(addrOf(m.Addr)); verdict == rrlDrop {
					s.h.stats.rrlDropped.Add(1)
					continue
				}
			}
			if l := w.answer(m.Buffers[0][:m.N], out[k].Buffers[0][:cap(out[k].Buffers[0])], m.Addr); l > 0 {
				if verdict == rrlSlip {
					s.h.stats.rrlSlipped.Add(1)
					if l = slipReply(out[k].Buffers[0], l); l == 0 {
						continue
					}
				}
				out[k].Buffers[0] = out[k].Buffers[0][:l]
				out[k].Addr = m.Addr
				k++
			}
		}
		for sent := 0; sent < k; {
			n, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				break // the client is gone, or the socket closed: nothing to retry
			}
			sent += n
		}
		w.batchDone(out[:k], time.Since(start))
		// Pack what the full handler answered, now that its replies are
		// sent: the next such query takes the fast path.
		for _, l := range w.learn {
			s.h.learn(l[0], l[1])
		}
		clear(w.learn)
		w.learn = w.learn[:0]
		for i := range out[:k] {
			out[i].Buffers[0] = out[i].Buffers[0][:cap(out[i].Buffers[0])]
		}
	}
}

// batchWriter answers one datagram into a buffer.
type batchWriter struct {
	h   *Handler
	key []byte
	batchStats
	// learn holds the (query, reply) pairs of the batch the full handler
	// answered, to pack once the batch is sent.
	learn [][2]*dns.Msg
}

// answer writes the reply to pkt into buf and returns its length; 0 means
// no reply (a response, a packet without a header: "let them hang", as
// miekg's server does, since any reply can be used to amplify).
func (w *batchWriter) answer(pkt, buf []byte, from net.Addr) (n int) {
	if n := w.h.fastReply(pkt, buf, w.key); n > 0 {
		w.countFast(pkt, buf[:n])
		return n
	}
	defer func() {
		if p := recover(); p != nil {
			w.h.log().Error().Interface("panic", p).Msg("query handler panicked")
			n = w.servfail(pkt, buf)
		}
		w.count(buf[:n], pathFull)
	}()
	return w.slow(pkt, buf, from)
}

// slow is the full path, as miekg's server would run it: the same accept
// rules, then the handler's reply.
func (w *batchWriter) slow(pkt, buf []byte, from net.Addr) int {
	if len(pkt) < 12 {
		return 0
	}
	dh := dns.Header{
		Id: binary.BigEndian.Uint16(pkt), Bits: binary.BigEndian.Uint16(pkt[2:]),
		Qdcount: binary.BigEndian.Uint16(pkt[4:]), Ancount: binary.BigEndian.Uint16(pkt[6:]),
		Nscount: binary.BigEndian.Uint16(pkt[8:]), Arcount: binary.BigEndian.Uint16(pkt[10:]),
	}
	var m *dns.Msg
	switch acceptQuery(dh) {
	case dns.MsgIgnore:
		return 0
	case dns.MsgReject:
		m = rejection(dh, dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		m = rejection(dh, dns.RcodeNotImplemented)
	default:
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			m = rejection(dh, dns.RcodeFormatError)
			break
		}
		m = w.h.reply(req, false, addrOf(from))
		if m.Rcode == dns.RcodeSuccess && m.Authoritative {
			w.learn = append(w.learn, [2]*dns.Msg{req, m}) // packed after the batch is sent
		}
	}
	b, err := m.PackBuffer(buf)
	if err != nil || len(b) > len(buf) {
		return 0
	}
	if &b[0] != &buf[0] {
		copy(buf, b)
	}
	return len(b)
}

// acceptQuery is the servers' MsgAcceptFunc: miekg's DefaultMsgAcceptFunc,
// except that a query with a QDCOUNT other than 1 or an opcode other than
// QUERY reaches the handler, which answers FORMERR or NOTIMP with an OPT
// record when the query has one (RFC 6891 6.1.1), not a bare header.
// Responses are still ignored, and sections larger than a query's still
// rejected unparsed.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	action := dns.DefaultMsgAcceptFunc(dh)
	if (action == dns.MsgReject || action == dns.MsgRejectNotImplemented) &&
		dh.Ancount <= 1 && dh.Nscount <= 1 && dh.Arcount <= 2 {
		return dns.MsgAccept
	}
	return action
}

// rejection is the header-only reply to a query refused before parsing.
func rejection(dh dns.Header, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = dh.Id
	m.Response = true
	m.Opcode = int(dh.Bits>>11) & 0xF
	if rcode == dns.RcodeFormatError {
		m.Opcode = dns.OpcodeQuery
	}
	m.RecursionDesired = dh.Bits&(1<<8) != 0
	m.Rcode = rcode
	return m
}

func (w *batchWriter) servfail(pkt, buf []byte) int {
	if len(pkt) < 12 {
		return 0
	}
	m := rejection(dns.Header{Id: binary.BigEndian.Uint16(pkt), Bits: binary.BigEndian.Uint16(pkt[2:])}, dns.RcodeServerFailure)
	b, err := m.PackBuffer(buf)
	if err != nil {
		return 0
	}
	copy(buf, b)
	return len(b)
}

// listenUDP binds n sockets sharing addr's port (the first decides the port
// when it is 0).
func listenUDP(ctx context.Context, addr string, n int) ([]*net.UDPConn, error) {
	var conns []*net.UDPConn
	for i := range n {
		pc, err := reusePort.ListenPacket(ctx, "udp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conn := pc.(*net.UDPConn)
		// A burst larger than the kernel's default buffer (about 200 KB) is
		// dropped before we can read it; ask for more (the kernel caps it at
		// net.core.rmem_max), best effort.
		_ = conn.SetReadBuffer(udpSocketBuffer)
		_ = conn.SetWriteBuffer(udpSocketBuffer)
		conns = append(conns, conn)
		if i == 0 {
			addr = pc.LocalAddr().String()
		}
	}
	return conns, nil
}
