package loadtest

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// fakeDNS answers A with 10.0.0.1 and SRV with a.svc.service.local.:80,
// AAAA NODATA; when fail is set, SERVFAIL.
func fakeDNS(t *testing.T, fail *atomic.Bool) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case fail.Load():
			m.Rcode = dns.RcodeServerFailure
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 5 IN A 10.0.0.1")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeSRV:
			rr, _ := dns.NewRR(q.Name + " 5 IN SRV 1 1 80 a." + q.Name)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestLoadCountsAndPhases(t *testing.T) {
	var fail atomic.Bool
	addr := fakeDNS(t, &fail)
	name := "svc.service.local."
	exp := NewExpect(map[Question][]string{
		{name, dns.TypeA}:    {"10.0.0.1"},
		{name, dns.TypeSRV}:  {"a.svc.service.local.:80"},
		{name, dns.TypeAAAA}: {},
	})
	l := &Load{Addr: addr, Rate: 400, Duration: 1500 * time.Millisecond, Names: []string{name}, Expect: exp}
	l.Phase("ok")
	run := l.Start(context.Background())
	WaitFor(t, 5*time.Second, 0, "first answers", func() bool { return l.Progress().Answered > 50 })
	l.Phase("wrong")
	exp.Set(Question{name, dns.TypeA}, []string{"10.0.0.2"})
	WaitFor(t, 5*time.Second, 0, "wrong answers", func() bool { return l.Progress().Wrong > 10 })
	l.Phase("stale")
	exp.Change(Question{name, dns.TypeA}, []string{"10.0.0.3"}) // 10.0.0.2 accepted as last good: still wrong
	exp.Set(Question{name, dns.TypeA}, []string{"10.0.0.1"})
	l.SetStale(true)
	WaitFor(t, 5*time.Second, 0, "stale answers", func() bool { return l.Progress().Phase("stale").Stale > 10 })
	l.SetStale(false)
	l.Phase("fail")
	fail.Store(true)
	res := run.Wait()
	t.Log(res)
	require.InDelta(t, 600, res.Sent+res.Skipped, 60)
	require.Equal(t, res.Sent, res.Answered+res.Failed())
	require.Zero(t, res.Phase("ok").Failed())
	require.Positive(t, res.Phase("wrong").Wrong)
	require.Zero(t, res.Phase("wrong").ServFail)
	require.Equal(t, res.Phase("stale").Answered, res.Phase("stale").Stale)
	require.Positive(t, res.Phase("fail").ServFail)
	require.Positive(t, res.P99)
	line := res.Line("R0", "a|b")
	require.True(t, strings.HasPrefix(line, `| R0 | a\|b | `), line)
	require.Equal(t, 10, strings.Count(line, "|")-1)
}

func TestLoadTimeoutsBounded(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	require.NoError(t, err)
	defer pc.Close()
	l := &Load{Addr: pc.LocalAddr().String(), Rate: 200, Duration: 500 * time.Millisecond,
		Names: []string{"x.service.local."}, Timeout: 100 * time.Millisecond, Workers: 2}
	res := l.Run(context.Background())
	require.Equal(t, res.Sent, res.Timeouts)
	require.Positive(t, res.Skipped, "two workers cannot keep up with 200 qps of 100 ms timeouts")
}

func TestMatchesCapped(t *testing.T) {
	want := []string{"a", "b", "c"}
	require.True(t, Matches([]string{"a", "b", "c"}, want, 8))
	require.False(t, Matches([]string{"a", "b"}, want, 8))
	require.True(t, Matches([]string{"a", "c"}, want, 2))
	require.False(t, Matches([]string{"a", "d"}, want, 2))
}

func TestRecord(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.md")
	t.Setenv(OutEnv, out)
	Record(t, "| R0 | x |")
	Record(t, "| R0 | y |\n")
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "| R0 | x |\n| R0 | y |\n", string(data))
}

func TestProxyBlackholeHealReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() { // line echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	p := StartProxy(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	echo := func(s string, wait time.Duration) (string, error) {
		_ = c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte(s + "\n")); err != nil {
			return "", err
		}
		return r.ReadString('\n')
	}
	got, err := echo("one", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one\n", got)

	p.Blackhole()
	_, err = echo("two", 200*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "silence, not a close: %v", err)
	p.Heal()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "held bytes delivered after the heal")

	p.Reset()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = r.ReadString('\n')
	require.Error(t, err)
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
}
