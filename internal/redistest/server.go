// Package redistest is test-only: it runs a real redis-server and the Python
// reference registry writers so that integration tests exercise regdns
// against exactly what production services write. Import it from _test.go
// files only; it calls t.Fatal freely and starts processes.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// readyTimeout bounds how long a freshly started redis-server may take
	// to answer PING; generous because -race and parallel packages slow
	// everything down.
	readyTimeout = 10 * time.Second
	// pollInterval is how often readiness is re-checked while waiting.
	pollInterval = 10 * time.Millisecond
	// exitTimeout bounds how long we wait for a signalled process to exit.
	exitTimeout = 10 * time.Second
	// rebindInterval spaces Restart's attempts to rebind a port that some
	// other process holds; each attempt is a whole process start.
	rebindInterval = 100 * time.Millisecond
	// startAttempts covers the window between FreePort closing its probe
	// listener and redis-server binding: another process may take the port.
	startAttempts = 5
	installHint   = "run scripts/install-test-deps.sh"
)

// Server is a redis-server child process owned by one test. It listens on
// 127.0.0.1 only, without persistence, so a Restart always comes back empty.
type Server struct {
	// Addr is host:port, ready for redis.Options.Addr.
	Addr string
	// Port is the TCP port the server listens on; it survives Restart.
	Port int

	bin  string
	dir  string
	args []string
	// out collects the output of every process this Server started, so a
	// failing test can show the whole history, restarts included.
	out *syncBuffer

	// mu serialises Kill, Stop, Restart and cleanup so that a process is
	// signalled and reaped exactly once.
	mu   sync.Mutex
	proc *process
}

// Start runs redis-server on a free port of 127.0.0.1 with persistence and
// protected mode off and its working directory in t.TempDir(), appends
// extraArgs to the command line, and waits (at most 10 s, polling every
// 10 ms) until it answers. The server is killed and reaped in t.Cleanup,
// which also logs its output if the test failed. It calls t.Fatal if
// redis-server is not on PATH or does not come up in time.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v); %s", err, installHint)
	}
	s := &Server{
		bin:  bin,
		dir:  t.TempDir(),
		args: append([]string(nil), extraArgs...),
		out:  &syncBuffer{},
	}
	// Registered after t.TempDir so it runs first (cleanups are LIFO) and
	// redis-server never sees its directory vanish.
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGKILL); err != nil {
			t.Errorf("redistest: cleanup: %v", err)
		}
		if t.Failed() {
			t.Logf("redistest: redis-server output on %s:\n%s", s.Addr, s.out.String())
		}
	})

	var lastErr error
	for range startAttempts {
		port := FreePort(t)
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.launch(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	// The cleanup above logs the server output, since the test has failed.
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// URL returns the redis:// URL of database 0, the form regdns is configured with.
func (s *Server) URL() string {
	return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port)
}

// Client returns a go-redis client for the server, closed in t.Cleanup. It
// reconnects by itself after Restart; but note that a go-redis client which
// failed to dial many times while the server was down refuses to dial again
// for up to a second (its pool's dial-error circuit), so poll after Restart.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(clientOptions(s.Addr))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL, as a crash would, and waits for the process to exit.
// Killing a server that is not running is a no-op.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("redistest: kill: %v", err)
	}
}

// Stop shuts the server down gracefully with SIGTERM and waits for it to
// exit, falling back to SIGKILL if it does not. Stopping a server that is not
// running is a no-op.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("redistest: stop: %v", err)
	}
}

// Restart kills the server if it is still running, starts a new one on the
// same port and waits until it answers PING. The new server is empty, since
// nothing is persisted.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
	// The port cannot change, so a bind failure can only be waited out: some
	// other process grabbed it in the instant it was free.
	deadline := time.Now().Add(readyTimeout)
	ticker := time.NewTicker(rebindInterval)
	defer ticker.Stop()
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr, err)
		}
		<-ticker.C
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is not reserved: callers must tolerate losing it to another process.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// errPortInUse marks a start that failed only because the port was taken,
// which is worth retrying.
var errPortInUse = errors.New("port already in use")

// launch starts one redis-server process on s.Port and waits until it
// answers; on failure the process is reaped before returning.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("redis-server already running")
	}
	args := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--dir", s.dir,
	}
	outStart := s.out.Len() // only this launch's output tells why it failed
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go p.reap()

	if err := waitReady(s.Addr, p); err != nil {
		if kerr := p.signalAndWait(syscall.SIGKILL); kerr != nil {
			err = errors.Join(err, kerr)
		}
		if strings.Contains(s.out.StringFrom(outStart), "ddress already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return err
	}
	s.proc = p
	return nil
}

// stop signals the running process, if any, and waits for it; a SIGTERM that
// is ignored is followed by SIGKILL.
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	// Forget the process before signalling so that a second Kill, Stop or
	// the cleanup never touches a reaped pid.
	s.proc = nil
	err := p.signalAndWait(sig)
	if err != nil && sig != syscall.SIGKILL {
		err = errors.Join(err, p.signalAndWait(syscall.SIGKILL))
	}
	if err != nil {
		return fmt.Errorf("redis-server pid %d on %s: %w", p.cmd.Process.Pid, s.Addr, err)
	}
	return nil
}

// clientOptions keeps go-redis quiet against older servers: redis 7.0 knows
// neither CLIENT SETINFO nor CLIENT MAINT_NOTIFICATIONS.
func clientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                     addr,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// waitReady polls every pollInterval until the server answers, p exits or
// the deadline passes. It asks INFO rather than PING so it can check that
// the answer comes from p and not from another redis-server that held the
// port while p failed to bind.
func waitReady(addr string, p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	want := "process_id:" + strconv.Itoa(p.cmd.Process.Pid) + "\r\n"
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		info, err := serverInfo(ctx, addr)
		switch {
		case err == nil && strings.Contains(info, want):
			return nil
		case err == nil:
			lastErr = errors.New("port answered by a different redis-server")
		default:
			lastErr = err
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited before answering: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("redis-server not ready on %s after %v: %w", addr, readyTimeout, lastErr)
		case <-ticker.C:
		}
	}
}

// serverInfo returns INFO server from addr. A plain TCP dial comes first
// because a go-redis pool that fails to dial logs every failure, retries
// with 100 ms back-off and, after enough failures, refuses to dial for up to
// a second: all wrong for a 10 ms readiness poll. The client is per attempt
// for the same reason.
func serverInfo(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial: %w", err)
	}
	_ = conn.Close()

	opts := clientOptions(addr)
	opts.MaxRetries = -1 // the poll loop is the retry
	opts.DialerRetries = 1
	opts.PoolSize = 1
	c := redis.NewClient(opts)
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("INFO server: %w", err)
	}
	return info, nil
}

// process is one redis-server child. Exactly one goroutine calls cmd.Wait
// (reap); everyone else learns about the exit through done, which keeps
// signalling and waiting free of data races.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed after waitErr is set
	// waitErr is written by reap before done is closed; read it only after <-done.
	waitErr error
}

// reap waits for the process and publishes its exit.
func (p *process) reap() {
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// signalAndWait sends sig and waits for the process to exit.
func (p *process) signalAndWait(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v: %w", sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("still running %v after %v", exitTimeout, sig)
	}
}

// syncBuffer is a bytes.Buffer safe for the exec copying goroutines writing
// while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p under the lock.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns a copy of everything written so far.
func (b *syncBuffer) String() string {
	return b.StringFrom(0)
}

// Len returns the number of bytes written so far.
func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// StringFrom returns a copy of what was written from offset off on.
func (b *syncBuffer) StringFrom(off int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf.Bytes()[off:])
}
