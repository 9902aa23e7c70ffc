package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Addr is the host:port served over both UDP and TCP (default
	// 127.0.0.1:8053). Port 0 picks a free port, the same for both.
	Addr string
	// Handler answers queries.
	Handler *Handler
	// UDPSockets is the number of UDP sockets sharing the port, each served
	// by its own goroutine (default GOMAXPROCS).
	UDPSockets int
	// ReadTimeout and WriteTimeout bound TCP reads and writes (default 2s).
	ReadTimeout, WriteTimeout time.Duration
	// IdleTimeout closes idle TCP connections (default 10s).
	IdleTimeout time.Duration
	// MaxTCPConnections bounds concurrent TCP connections; more are closed
	// on accept (default 1000).
	MaxTCPConnections int
	// RRL limits UDP responses per client prefix (off by default).
	RRL RRLOptions
}

// Server serves one address over UDP (batched, see udp.go) and TCP
// (through miekg/dns).
type Server struct {
	opts ServerOptions
	udp  *udpServer
	tcp  *dns.Server
	addr string
	wg   sync.WaitGroup
	errs chan error
}

// NewServer returns a Server; Start binds it.
func NewServer(opts ServerOptions) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8053"
	}
	if opts.UDPSockets <= 0 {
		opts.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 2 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 2 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Second
	}
	if opts.MaxTCPConnections <= 0 {
		opts.MaxTCPConnections = 1000
	}
	return &Server{opts: opts, errs: make(chan error, 1)}
}

// Start binds the sockets and serves them in the background. It returns an
// error, and serves nothing, when the address cannot be bound (a port in
// use, a bad address).
func (s *Server) Start() error {
	conns, l, err := s.listen()
	if err != nil {
		return err
	}
	s.addr = l.Addr().String()
	s.udp = &udpServer{h: s.opts.Handler, conns: conns, rrl: newRRL(s.opts.RRL)}
	idle := s.opts.IdleTimeout
	started := make(chan struct{})
	s.tcp = &dns.Server{
		Listener: newLimitListener(l, s.opts.MaxTCPConnections), Handler: s.opts.Handler, MsgAcceptFunc: acceptQuery,
		ReadTimeout: s.opts.ReadTimeout, WriteTimeout: s.opts.WriteTimeout,
		IdleTimeout:       func() time.Duration { return idle },
		NotifyStartedFunc: func() { close(started) },
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.tcp.ActivateAndServe(); err != nil {
			s.errs <- err
		}
	}()
	select {
	case <-started:
	case err := <-s.errs:
		for _, c := range conns {
			c.Close()
		}
		return fmt.Errorf("serve tcp %s: %w", s.addr, err)
	}
	s.udp.start()
	return nil
}

// listen binds the UDP sockets (sharing one port), then TCP on that port.
// TCP is bound without SO_REUSEPORT, so a second server on the same address
// fails here even though its UDP sockets could have joined ours. With port
// 0 the TCP port may be taken already; then another port is tried.
func (s *Server) listen() ([]*net.UDPConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(s.opts.Addr)
	for try := 0; ; try++ {
		conns, err := listenUDP(context.Background(), s.opts.Addr, s.opts.UDPSockets)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", s.opts.Addr, err)
		}
		l, err := net.Listen("tcp", conns[0].LocalAddr().String())
		if err == nil {
			return conns, l, nil
		}
		for _, c := range conns {
			c.Close()
		}
		if port != "0" || try == 10 {
			return nil, nil, err // *net.OpError names the address
		}
	}
}

// Addr is the bound address (host:port), valid after Start.
func (s *Server) Addr() string { return s.addr }

// Err delivers a serving error after Start (the TCP listener failed).
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting queries and waits, until ctx ends, for those in
// flight to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.udp != nil {
		if err := s.udp.shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tcp != nil {
		if err := s.tcp.ShutdownContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
