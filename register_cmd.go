package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/regdns/regdns/registry"
)

// registerCmd is `regdns register`: a sidecar that registers one instance
// exactly as the reference ServiceClient does, for services written in a
// language that has no registry client. It registers (MULTI/EXEC of SETEX,
// SADD and PUBLISH "registered"), heartbeats every ttl/3, registers again
// under a new id when a heartbeat finds the key gone, and deregisters when
// ctx ends (SIGINT, SIGTERM). Redis outages are logged and waited out.
func registerCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("register", stderr).redisFlag()
	service := f.fs.String("service", "", "service name to register under (required)")
	host := f.fs.String("host", "", "address to register (default: the IPv4 address of this machine's host name, as the reference client finds it; 127.0.0.1 if it does not resolve)")
	port := f.fs.Int("port", 0, "port to register, 1..65535 (required)")
	meta := metaFlag{}
	f.fs.Var(meta, "meta", "metadata `key=value`, repeatable; a value that is a JSON number or boolean is written as one (weight=3), a JSON string literal as that string (version='\"2\"'), anything else as a string")
	ttl := f.fs.Duration("ttl", 30*time.Second, "TTL of the instance key, whole seconds; a heartbeat rewrites it every ttl/3")
	id := f.fs.String("id", "", "instance id of the first registration (default a new random UUID); a re-registration always takes a new one")
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "Usage: regdns register -service NAME -port PORT [flags]\n\n")
		f.fs.PrintDefaults()
	}
	cfg, err := f.load(args, getenv, nil)
	if err != nil {
		return err
	}
	switch {
	case *service == "":
		return errors.New("-service is required")
	case *port < 1 || *port > 65535:
		return fmt.Errorf("-port %d: want 1..65535", *port)
	case *ttl < time.Second || *ttl%time.Second != 0:
		return fmt.Errorf("-ttl %v: want whole seconds, at least 1s (SETEX takes seconds)", *ttl)
	case strings.Contains(*id, ":"):
		return fmt.Errorf("-id %q: an instance id must not contain ':'", *id)
	}
	log := newLogger(cfg, stderr).With().Str("service", *service).Logger()
	if *host == "" {
		*host = localHostIP(ctx, os.Hostname, net.DefaultResolver.LookupIP, log)
	}
	if *id == "" {
		*id = newInstanceID()
	}
	client, _, err := newRedisClient(cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()
	s := &sidecar{
		w:       registry.NewWriter(client, keysOf(cfg)),
		log:     log,
		stdout:  stdout,
		service: *service,
		host:    *host,
		port:    *port,
		meta:    meta,
		ttl:     *ttl,
		timeout: cfg.Redis.Timeout.Duration,
		newID:   newInstanceID,
	}
	return s.run(ctx, *id)
}

// sidecar is the state of one `regdns register`; only run's goroutine
// touches it.
type sidecar struct {
	w       *registry.Writer
	log     zerolog.Logger
	stdout  io.Writer
	service string
	host    string
	port    int
	meta    map[string]any
	ttl     time.Duration
	// timeout bounds each Redis call (redis.timeout).
	timeout time.Duration
	newID   func() string
}

// run registers under id and keeps the registration alive until ctx ends,
// then deregisters. The loop is the reference ServiceClient._heartbeat_loop:
// heartbeat; if the key is gone, register under a new id; on any error, log
// and try again at the next tick.
func (s *sidecar) run(ctx context.Context, id string) error {
	s.announce(id)
	registered := s.register(ctx, id)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.deregister(id)
		case <-tick.C:
		}
		if !registered {
			// The registration of id never went through: nothing was
			// published for it, so try the same id again.
			registered = s.register(ctx, id)
			continue
		}
		alive, err := s.heartbeat(ctx, id)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Error().Err(err).Str("instance", id).Msg("heartbeat failed; retrying at the next one")
			}
		case !alive:
			// As the reference does: the key expired (missed heartbeats, or
			// Redis lost it), so register again under a new id. The old id
			// stays in the set until a reader cleans it up.
			old := id
			id = s.newID()
			s.log.Warn().Str("old_instance", old).Str("instance", id).
				Msg("instance key gone; registering again under a new id")
			s.announce(id)
			registered = s.register(ctx, id)
		}
	}
}

// announce prints the instance id, one line per id registered under, so a
// supervisor can follow it.
func (s *sidecar) announce(id string) {
	fmt.Fprintln(s.stdout, id)
}

func (s *sidecar) register(ctx context.Context, id string) bool {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.w.Register(cctx, s.service, id, s.host, s.port, s.meta, s.ttl); err != nil {
		if ctx.Err() == nil {
			s.log.Error().Err(err).Str("instance", id).Msg("registration failed; retrying")
		}
		return false
	}
	s.log.Info().Str("instance", id).Str("address", net.JoinHostPort(s.host, fmt.Sprint(s.port))).
		Str("ttl", s.ttl.String()).Msg("registered")
	return true
}

func (s *sidecar) heartbeat(ctx context.Context, id string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.w.Heartbeat(cctx, s.service, id, s.ttl)
}

// deregister runs after ctx ended, so it has a context of its own, bounded
// by redis.timeout: a stop must not hang on an unreachable Redis (the key
// then expires by its TTL).
func (s *sidecar) deregister(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.w.Deregister(ctx, s.service, id); err != nil {
		return fmt.Errorf("%w (the instance key expires within %v)", err, s.ttl)
	}
	s.log.Info().Str("instance", id).Msg("deregistered")
	return nil
}

// localHostIP is the reference ServiceClient._get_host,
// socket.gethostbyname(socket.gethostname()): the first IPv4 address of the
// machine's host name, or 127.0.0.1 when that does not resolve.
func localHostIP(ctx context.Context, hostname func() (string, error), lookupIP func(ctx context.Context, network, host string) ([]net.IP, error), log zerolog.Logger) string {
	const fallback = "127.0.0.1"
	name, err := hostname()
	if err != nil {
		log.Warn().Err(err).Str("host", fallback).Msg("no host name; registering the loopback address (use -host)")
		return fallback
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := lookupIP(ctx, "ip4", name)
	if err != nil || len(ips) == 0 {
		log.Warn().Err(err).Str("hostname", name).Str("host", fallback).
			Msg("host name does not resolve; registering the loopback address (use -host)")
		return fallback
	}
	return ips[0].String()
}

// newInstanceID returns a random (version 4) UUID in its canonical text
// form, as Python's str(uuid.uuid4()).
func newInstanceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // crypto/rand.Read never fails; it crashes the program instead
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// metaFlag collects repeated -meta key=value flags into instance metadata.
type metaFlag map[string]any

// String implements flag.Value for metaFlag.
func (m metaFlag) String() string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(map[string]any(m))
	return string(b)
}

// Set implements flag.Value for metaFlag. A later value for the same key
// replaces the earlier one.
func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	m[k] = metaValue(v)
	return nil
}

// metaValue types a -meta value the way a JSON writer would have: JSON
// numbers and booleans keep their type (the conventions readers rely on,
// "weight": 3), a JSON string literal is that string, and anything else is
// the text itself.
func metaValue(v string) any {
	d := json.NewDecoder(bytes.NewReader([]byte(v)))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return v
	}
	if _, err := d.Token(); err != io.EOF {
		return v // trailing data: "1 2"
	}
	switch x := x.(type) {
	case json.Number, bool, string:
		return x
	}
	return v // null, objects and lists stay text
}
