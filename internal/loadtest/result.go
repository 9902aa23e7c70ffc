package loadtest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Result counts the outcomes of a load. Every query sent is exactly one of
// Answered, ServFail, NXDomain, OtherRcode, Timeouts or Wrong; Stale is the
// part of Answered given while the test marked the load stale (SetStale)
// or from a set Expect.Change replaced (the last good set).
type Result struct {
	Sent int
	// Answered: NOERROR with the expected set (or, for a question Expect
	// does not know, any NOERROR).
	Answered int
	Stale    int
	ServFail int
	NXDomain int
	// OtherRcode: REFUSED, FORMERR, ...
	OtherRcode int
	// Timeouts: no reply within Load.Timeout (or a socket error).
	Timeouts int
	// Refused is the part of Timeouts that was a refused port (ICMP port
	// unreachable on loopback: nothing listening), not silence.
	Refused int
	// Wrong: NOERROR with records that are neither the expected set nor a
	// last good one.
	Wrong int
	// Skipped: ticks not sent because every worker was busy (client-side
	// overload); not part of Sent.
	Skipped int
	// P50, P99 and Max are latencies of the replies (timeouts excluded).
	P50, P99, Max time.Duration
	// Elapsed is how long the load ran (0 for a phase).
	Elapsed time.Duration
	// Failures describes the first failed answers.
	Failures []string
	// Phases are the counts of each Load.Phase ("" for queries before the
	// first Phase call); nil inside a phase.
	Phases map[string]Result
}

// Failed is every query not answered correctly.
func (r Result) Failed() int { return r.ServFail + r.NXDomain + r.OtherRcode + r.Timeouts + r.Wrong }

// Phase returns the counts of one phase (zero when it saw no query).
func (r Result) Phase(name string) Result { return r.Phases[name] }

func (r Result) String() string {
	s := fmt.Sprintf("sent %d, answered %d (stale %d), SERVFAIL %d, NXDOMAIN %d, other rcode %d, timeouts %d (refused %d), wrong %d, skipped %d, p50 %s, p99 %s, max %s",
		r.Sent, r.Answered, r.Stale, r.ServFail, r.NXDomain, r.OtherRcode, r.Timeouts, r.Refused, r.Wrong, r.Skipped,
		FormatLatency(r.P50), FormatLatency(r.P99), FormatLatency(r.Max))
	if len(r.Failures) > 0 {
		s += "; first failures: " + strings.Join(r.Failures, "; ")
	}
	return s
}

// FormatLatency prints a latency in milliseconds with two decimals.
func FormatLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// Line is the docs/RELIABILITY.md row of this result:
//
//	| R1 | scenario | sent | answered | stale | SERVFAIL | timeouts | p50 | p99 |
//
// Pipes in the scenario are escaped.
func (r Result) Line(id, scenario string) string {
	return fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %s | %s |",
		id, strings.ReplaceAll(scenario, "|", `\|`), r.Sent, r.Answered, r.Stale, r.ServFail, r.Timeouts,
		FormatLatency(r.P50), FormatLatency(r.P99))
}

// OutEnv names the file Record appends result lines to.
const OutEnv = "REGDNS_RELIABILITY_OUT"

var recordMu sync.Mutex

// Record logs line and appends it to the file named by $REGDNS_RELIABILITY_OUT
// (no-op when unset). Lines are appended whole, so parallel tests and
// packages can share the file.
func Record(t testing.TB, line string) {
	t.Helper()
	t.Log(line)
	path := os.Getenv(OutEnv)
	if path == "" {
		return
	}
	recordMu.Lock()
	defer recordMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("loadtest: record to %s: %v", path, err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(strings.TrimRight(line, "\n") + "\n"); err != nil {
		t.Errorf("loadtest: record to %s: %v", path, err)
	}
}

// Full reports whether the full sizes of RELIABILITY-TESTS.md were asked
// for (REGDNS_RELIABILITY=full); tests run scaled-down sizes otherwise.
func Full() bool { return os.Getenv("REGDNS_RELIABILITY") == "full" }

// Size picks the CI size or, with REGDNS_RELIABILITY=full, the full one.
func Size[T any](ci, full T) T {
	if Full() {
		return full
	}
	return ci
}
