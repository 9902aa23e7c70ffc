package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/regdns/regdns/registry"
)

// Kind is how an instance is probed, from its metadata "health_check".
type Kind string

// Probe kinds.
const (
	// KindHTTP GETs http://host:port<health_path>; any 2xx is healthy. The default.
	KindHTTP Kind = "http"
	// KindTCP connects to host:port; an accepted connection is healthy.
	KindTCP Kind = "tcp"
	// KindNone is never probed, and its health key is never written.
	KindNone Kind = "none"
)

// Metadata keys the checker reads.
const (
	// MetaHealthCheck picks the probe kind: "http" (default), "tcp" or "none".
	MetaHealthCheck = "health_check"
	// MetaHealthPath is the HTTP path probed (default DefaultHealthPath).
	MetaHealthPath = "health_path"
	// DefaultHealthPath is the reference HealthChecker's default path.
	DefaultHealthPath = "/health"
)

// errUnknownKind marks an instance whose health_check names no probe.
var errUnknownKind = errors.New("unknown health_check")

// KindOf returns how in is probed. An unrecognised health_check is an error;
// the checker writes "unknown" for such an instance.
func KindOf(in registry.Instance) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(in.Meta.Get(MetaHealthCheck)))); k {
	case "", KindHTTP:
		return KindHTTP, nil
	case KindTCP, KindNone:
		return k, nil
	default:
		return "", fmt.Errorf("%w %q: want http, tcp or none", errUnknownKind, in.Meta.Get(MetaHealthCheck))
	}
}

// ProbeFunc probes in once, the way kind says. It returns nil when in is
// healthy. ctx carries the probe timeout; a ProbeFunc must return when ctx
// ends.
type ProbeFunc func(ctx context.Context, kind Kind, in registry.Instance) error

// Prober is the default ProbeFunc: HTTP GET and TCP connect over fresh
// connections (no keep-alive, no proxy), so 10,000 instances hold no idle
// sockets between rounds.
type Prober struct {
	client *http.Client
	dialer net.Dialer
}

// NewProber returns a Prober. Timeouts come from the context of each call.
func NewProber() *Prober {
	return &Prober{client: &http.Client{Transport: &http.Transport{
		Proxy:              nil, // a health check goes to the instance, never through a proxy
		DisableKeepAlives:  true,
		DisableCompression: true,
	}}}
}

// maxBody bounds how much of a health response is read (and discarded).
const maxBody = 64 << 10

// Probe implements [ProbeFunc] for HTTP and TCP.
func (p *Prober) Probe(ctx context.Context, kind Kind, in registry.Instance) error {
	addr := net.JoinHostPort(in.Host, strconv.Itoa(int(in.Port)))
	switch kind {
	case KindHTTP:
		return p.http(ctx, "http://"+addr+healthPath(in))
	case KindTCP:
		conn, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	default:
		return fmt.Errorf("%w %q", errUnknownKind, kind)
	}
}

func (p *Prober) http(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "regdns-health")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// healthPath is metadata health_path, default "/health", with a leading slash.
func healthPath(in registry.Instance) string {
	p := strings.TrimSpace(in.Meta.Get(MetaHealthPath))
	if p == "" {
		return DefaultHealthPath
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}
