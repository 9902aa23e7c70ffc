package redistest

import (
	"bytes"
	"context"
	_ "embed" // refwriter.py is embedded as a fallback, see scriptPath
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// python is Debian's interpreter, the one python3-redis installs into;
	// a pyenv or venv python3 earlier on PATH would not have it.
	python = "/usr/bin/python3"
	// exitNoRedisModule is refwriter.py's exit status when `import redis` fails.
	exitNoRedisModule = 3
	// refTimeout bounds one writer invocation, interpreter start-up included.
	refTimeout = 30 * time.Second
)

// refwriterSource is used when refwriter.py cannot be found next to this
// file, e.g. in a binary built with -trimpath.
//
//go:embed refwriter.py
var refwriterSource string

// Reference drives refwriter.py, the seed's Python ServiceRegistry and
// HealthChecker, so tests write the registry with exactly the commands real
// services send. Every method runs one python3 process and calls t.Fatal on
// any failure.
type Reference struct {
	// URL is the redis:// URL the writer connects to, e.g. Server.URL().
	URL string
}

// Register runs ServiceRegistry(ttl).register and returns the new instance
// id: SETEX of the instance JSON, SADD and PUBLISH "registered" in one
// MULTI/EXEC. meta is sent as JSON (nil becomes {}); ttlSeconds <= 0 means
// the writer default of 30.
func (r Reference) Register(t testing.TB, service, host string, port int, meta map[string]any, ttlSeconds int) string {
	t.Helper()
	if meta == nil {
		meta = map[string]any{}
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		t.Fatalf("redistest: encode metadata %v: %v", meta, err)
	}
	args := []string{"register", service, host, strconv.Itoa(port), string(metaJSON)}
	if ttlSeconds > 0 {
		args = append(args, strconv.Itoa(ttlSeconds))
	}
	id := r.run(t, args...)
	if id == "" {
		t.Fatalf("redistest: refwriter register %s printed no instance id", service)
	}
	return id
}

// Deregister runs ServiceRegistry.deregister: DEL, SREM and PUBLISH
// "deregistered" in one MULTI/EXEC.
func (r Reference) Deregister(t testing.TB, service, id string) {
	t.Helper()
	r.run(t, "deregister", service, id)
}

// Heartbeat runs ServiceRegistry.heartbeat with the default TTL of 30 s, as
// ServiceClient does: GET, then SETEX with a new last_heartbeat. It reports
// false, writing nothing, when the instance key is gone.
func (r Reference) Heartbeat(t testing.TB, service, id string) bool {
	t.Helper()
	return r.HeartbeatTTL(t, service, id, 0)
}

// HeartbeatTTL is Heartbeat for a registry built with a non-default TTL, so
// tests using short TTLs can keep an instance alive; ttlSeconds <= 0 means 30.
func (r Reference) HeartbeatTTL(t testing.TB, service, id string, ttlSeconds int) bool {
	t.Helper()
	args := []string{"heartbeat", service, id}
	if ttlSeconds > 0 {
		args = append(args, strconv.Itoa(ttlSeconds))
	}
	switch out := r.run(t, args...); out {
	case "true":
		return true
	case "false":
		return false
	default:
		t.Fatalf("redistest: refwriter heartbeat printed %q, want true or false", out)
		return false
	}
}

// SetHealth runs HealthChecker(check_interval).check_instance with a check
// forced to yield status ("healthy", "unhealthy" or "unknown"): one SETEX of
// health:<service>:<id> with TTL 3*interval. intervalSeconds <= 0 means the
// checker default of 10.
func (r Reference) SetHealth(t testing.TB, service, id, status string, intervalSeconds int) {
	t.Helper()
	args := []string{"health", service, id, status}
	if intervalSeconds > 0 {
		args = append(args, strconv.Itoa(intervalSeconds))
	}
	r.run(t, args...)
}

// run executes refwriter.py with the URL and args and returns its trimmed
// stdout.
func (r Reference) run(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("redistest: %s unavailable (%v); run scripts/install-test-deps.sh", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), refTimeout)
	defer cancel()

	script, stdin := scriptPath()
	cmd := exec.CommandContext(ctx, python, append([]string{script, r.URL}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()

	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return strings.TrimSpace(stdout.String())
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exitNoRedisModule:
		t.Fatalf("redistest: %s cannot import redis; run scripts/install-test-deps.sh\n%s", python, stderr.String())
	default:
		t.Fatalf("redistest: refwriter.py %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return ""
}

// scriptPath locates refwriter.py next to this source file, which works from
// any package's test because the path is recorded at compile time. When the
// file is not there it returns "-" plus the embedded source to feed python on
// stdin.
func scriptPath() (path, stdin string) {
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "refwriter.py")
		if _, err := os.Stat(p); err == nil {
			return p, ""
		}
	}
	return "-", refwriterSource
}
