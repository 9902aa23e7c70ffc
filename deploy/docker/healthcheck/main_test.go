package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultURL(t *testing.T) {
	for listen, want := range map[string]string{
		"":               "http://127.0.0.1:9153/healthz",
		"127.0.0.1:9153": "http://127.0.0.1:9153/healthz",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/healthz",
		":9153":          "http://127.0.0.1:9153/healthz",
		"[::]:9153":      "http://[::1]:9153/healthz",
		"[::1]:9153":     "http://[::1]:9153/healthz",
		"10.0.0.5:9153":  "http://10.0.0.5:9153/healthz",
	} {
		require.Equal(t, want, defaultURL(listen), "listen %q", listen)
	}
}

func TestRun(t *testing.T) {
	var gotPath, gotAgent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAgent = r.URL.RequestURI(), r.UserAgent()
		switch r.URL.Path {
		case "/healthz", "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/created":
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	listen := strings.TrimPrefix(srv.URL, "http://")
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "REGDNS_HTTP_LISTEN" {
				return v
			}
			return ""
		}
	}
	runOut := func(getenv func(string) string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(args, getenv, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, out, _ := runOut(env(listen))
	require.Equal(t, 0, code)
	require.Equal(t, "/healthz", gotPath)
	require.Equal(t, "regdns-healthcheck", gotAgent)
	require.Contains(t, out, "200 OK")

	code, _, _ = runOut(env(""), srv.URL+"/readyz?verbose=1")
	require.Equal(t, 0, code)
	require.Equal(t, "/readyz?verbose=1", gotPath)

	code, _, _ = runOut(env(""), srv.URL+"/created")
	require.Equal(t, 0, code, "any 2xx is healthy")

	code, _, errOut := runOut(env(listen), srv.URL+"/down")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "503")

	code, _, _ = runOut(env(""), "ftp://"+listen+"/")
	require.Equal(t, 1, code)

	code, _, _ = runOut(env(""), "-h")
	require.Equal(t, 0, code)
	code, _, _ = runOut(env(""), "a", "b")
	require.Equal(t, 2, code)
}

func TestCheckFailures(t *testing.T) {
	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = check("http://"+closed+"/healthz", time.Second)
	require.Error(t, err)

	// Something that is not HTTP, and something that never answers: both
	// fail, the second within the timeout.
	for name, reply := range map[string]string{"garbage": "SSH-2.0-OpenSSH\r\n", "silent": ""} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		done := make(chan struct{})
		t.Cleanup(func() { close(done) })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			if reply != "" {
				c.Write([]byte(reply))
			}
			<-done
		}()
		start := time.Now()
		_, err = check("http://"+ln.Addr().String()+"/healthz", 300*time.Millisecond)
		require.Error(t, err, name)
		require.Less(t, time.Since(start), 2*time.Second, name)
	}
}
