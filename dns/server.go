package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	Handler dns.Handler
	// ReadTimeout and WriteTimeout bound TCP reads and writes (default 2s).
	ReadTimeout, WriteTimeout time.Duration
	// IdleTimeout closes idle TCP connections (default 10s).
	IdleTimeout time.Duration
	// MaxTCPConnections bounds concurrent TCP connections; more are closed
	// on accept (default 1000).
	MaxTCPConnections int
}

// Server serves one address over UDP and TCP.
type Server struct {
	opts     ServerOptions
	udp, tcp *dns.Server
	addr     string
	wg       sync.WaitGroup
	errs     chan error
}

// NewServer returns a Server; Start binds it.
func NewServer(opts ServerOptions) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8053"
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
	return &Server{opts: opts, errs: make(chan error, 2)}
}

// Start binds both sockets and serves them in the background. It returns an
// error, and serves nothing, when either address cannot be bound (a port in
// use, a bad address).
func (s *Server) Start() error {
	pc, l, err := s.listen()
	if err != nil {
		return err
	}
	s.addr = pc.LocalAddr().String()
	idle := s.opts.IdleTimeout
	s.udp = &dns.Server{PacketConn: pc, Handler: s.opts.Handler}
	s.tcp = &dns.Server{
		Listener: newLimitListener(l, s.opts.MaxTCPConnections), Handler: s.opts.Handler,
		ReadTimeout: s.opts.ReadTimeout, WriteTimeout: s.opts.WriteTimeout,
		IdleTimeout: func() time.Duration { return idle },
	}
	started := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.errs <- err
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-s.errs:
			_ = s.Shutdown(context.Background())
			return fmt.Errorf("serve %s: %w", s.addr, err)
		}
	}
	return nil
}

// listen binds UDP, then TCP on the port UDP got. With port 0 the TCP port
// may be taken already; then another UDP port is tried.
func (s *Server) listen() (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(s.opts.Addr)
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", s.opts.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", s.opts.Addr, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || try == 10 {
			return nil, nil, err // *net.OpError names the address
		}
	}
}

// Addr is the bound address (host:port), valid after Start.
func (s *Server) Addr() string { return s.addr }

// Err delivers a serving error after Start (the sockets failed).
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting queries and waits, until ctx ends, for those in
// flight.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv == nil {
			continue
		}
		if err := srv.ShutdownContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
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
