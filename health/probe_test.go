package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/registry"
)

// instanceAt is an instance at the host and port of addr ("127.0.0.1:1234").
func instanceAt(t *testing.T, addr string, meta map[string]string) registry.Instance {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	require.NoError(t, err)
	return registry.Instance{Service: "svc", ID: "i1", Host: ap.Addr().String(), Addr: ap.Addr(), Port: ap.Port(), Meta: registry.MetadataOf(meta)}
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		meta    map[string]string
		want    Kind
		wantErr bool
	}{
		{nil, KindHTTP, false},
		{map[string]string{"health_check": "http"}, KindHTTP, false},
		{map[string]string{"health_check": " TCP "}, KindTCP, false},
		{map[string]string{"health_check": "none"}, KindNone, false},
		{map[string]string{"health_check": "grpc"}, "", true},
	} {
		got, err := KindOf(registry.Instance{Meta: registry.MetadataOf(tc.meta)})
		require.Equal(t, tc.want, got, "meta %v", tc.meta)
		require.Equal(t, tc.wantErr, err != nil, "meta %v: err %v", tc.meta, err)
	}
}

func TestHealthPath(t *testing.T) {
	for meta, want := range map[string]string{"": "/health", "/hz": "/hz", "ready": "/ready", "/s?deep=1": "/s?deep=1"} {
		require.Equal(t, want, healthPath(registry.Instance{Meta: registry.MetadataOf(map[string]string{"health_path": meta})}), "health_path %q", meta)
	}
}

func TestProbeHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, http.MethodGet, r.Method)
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/health", http.StatusFound) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	p := NewProber()

	for _, tc := range []struct {
		path    string
		healthy bool
	}{
		{"", true}, // the default /health
		{"/no-content", true},
		{"/down", false},
		{"/moved", true}, // followed, as the reference's requests.get does
		{"/missing", false},
	} {
		t.Run("path "+tc.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			err := p.Probe(ctx, KindHTTP, instanceAt(t, addr, map[string]string{"health_path": tc.path}))
			require.Equal(t, tc.healthy, err == nil, "error: %v", err)
		})
	}

	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := p.Probe(ctx, KindHTTP, instanceAt(t, addr, map[string]string{"health_path": "/hang"}))
		require.Error(t, err)
		require.Less(t, time.Since(start), time.Second, "a hanging backend is given up at the timeout")
	})

	t.Run("nothing listening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closed := l.Addr().String()
		require.NoError(t, l.Close())
		require.Error(t, p.Probe(t.Context(), KindHTTP, instanceAt(t, closed, nil)))
	})
}

func TestProbeHTTPOverIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	require.NoError(t, NewProber().Probe(t.Context(), KindHTTP, instanceAt(t, l.Addr().String(), nil)))
}

func TestProbeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.Close()
			accepted <- struct{}{}
		}
	}()
	in := instanceAt(t, l.Addr().String(), map[string]string{"health_check": "tcp"})
	p := NewProber()
	require.NoError(t, p.Probe(t.Context(), KindTCP, in))
	<-accepted
	require.NoError(t, l.Close())
	require.Error(t, p.Probe(t.Context(), KindTCP, in), "refused once the listener is gone")

	// A host name is dialed by name.
	in.Host, in.Addr = "localhost", netip.Addr{}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l2.Close() })
	in.Port = uint16(l2.Addr().(*net.TCPAddr).Port)
	require.NoError(t, p.Probe(t.Context(), KindTCP, in), "localhost:"+strconv.Itoa(int(in.Port)))
}
