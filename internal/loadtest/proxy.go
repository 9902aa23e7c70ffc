package loadtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy on loopback between regdns and Redis that can
// simulate a network partition: Blackhole stops forwarding in both
// directions while keeping every connection open (no FIN, no RST: the
// peers only see silence, as with a dropped route), Heal resumes, and what
// was held back is delivered then, as TCP retransmission would. Reset
// closes every connection with an RST. It is closed in t.Cleanup.
type Proxy struct {
	// Addr is the proxy's listening address, host:port.
	Addr string

	target string
	ln     net.Listener
	done   chan struct{}
	wg     sync.WaitGroup
	// live counts the proxy's own goroutines, so an in-process test can
	// tell them from the ones of the code under test.
	live atomic.Int64

	mu      sync.Mutex
	gate    chan struct{} // closed while forwarding
	refused bool
	conns   map[*net.TCPConn]struct{}
}

// StartProxy listens on a free loopback port and forwards to target.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("loadtest: proxy listen: %v", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, done: make(chan struct{}),
		gate: open, conns: map[*net.TCPConn]struct{}{}}
	p.wg.Add(1)
	p.live.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// URL is the redis:// URL of database db through the proxy.
func (p *Proxy) URL(db int) string { return fmt.Sprintf("redis://%s/%d", p.Addr, db) }

// Blackhole stops forwarding: bytes already sent wait in the proxy, new
// connections are accepted but not connected on. Idempotent.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already blackholed
	}
}

// Refuse makes the proxy behave like a stopped server: every open
// connection is reset, and new ones are reset as soon as they are accepted,
// until Heal.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	p.refused = true
	p.mu.Unlock()
	p.Reset()
}

// SetTarget changes where new connections go (open ones stay).
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// Heal resumes forwarding after Blackhole or Refuse. Idempotent.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused = false
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// Reset closes every open connection, on both sides, with an RST.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.SetLinger(0)
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Conns is the number of connections open through the proxy (both sides).
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Goroutines is the number of goroutines the proxy runs now (one per
// connection waiting out a blackhole, two per forwarding connection, plus
// its listener).
func (p *Proxy) Goroutines() int { return int(p.live.Load()) }

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	_ = p.ln.Close()
	p.Reset()
	p.wg.Wait()
}

func (p *Proxy) track(c *net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		_ = c.Close()
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	_ = c.Close()
}

// waitOpen blocks while the proxy is blackholed; false once it is closed.
func (p *Proxy) waitOpen() bool {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	select {
	case <-g:
		return true
	case <-p.done:
		return false
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	defer p.live.Add(-1)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		client := c.(*net.TCPConn)
		if !p.track(client) {
			continue
		}
		p.wg.Add(1)
		p.live.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	defer p.live.Add(-1)
	defer p.untrack(client)
	if !p.waitOpen() {
		return
	}
	p.mu.Lock()
	target, refused := p.target, p.refused
	p.mu.Unlock()
	if refused {
		_ = client.SetLinger(0)
		return
	}
	c, err := net.Dial("tcp", target)
	if err != nil {
		_ = client.SetLinger(0) // refused upstream: refuse downstream too
		return
	}
	server := c.(*net.TCPConn)
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Add(2)
	p.live.Add(2)
	go func() { defer wg.Done(); defer p.live.Add(-1); p.pipe(server, client) }()
	go func() { defer wg.Done(); defer p.live.Add(-1); p.pipe(client, server) }()
	wg.Wait()
}

// pipe copies src to dst, holding each chunk while the proxy is
// blackholed. When either side ends, both are closed.
func (p *Proxy) pipe(dst, src *net.TCPConn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitOpen() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.SetLinger(0)
			}
			return
		}
	}
}
