package health

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// The choice: one leader lease, not a split of instances between checkers.
//
// A split needs every checker to agree on who is alive (a membership key per
// checker, a consistent hash, a rebalance whenever one comes or goes); during
// a rebalance two checkers can own the same instance, or none. A lease is one
// key: SET <key> <token> NX PX <ttl> takes it, a compare-and-extend script
// renews it, a compare-and-delete script gives it back. Exactly one checker
// probes; the others only watch the key. One checker is enough because probes
// run concurrently with a bound (Options.Concurrency): at 64 probes in flight
// and probes answering in tens of milliseconds, 10,000 instances take a few
// seconds of a 10 s interval.
//
// Timing, with ttl = Options.LeaseTTL:
//   - the holder renews every ttl/3 and counts its lease as valid until ttl
//     after it *sent* the last successful renewal (Redis starts its own count
//     later, so the holder always stops first);
//   - a tenth of ttl before that moment, without a renewal in between
//     (Redis unreachable), the holder stops probing; the tenth covers a late
//     timer and clocks that run at slightly different rates. A renewal that
//     finds another token stops it at once;
//   - a standby retries every ttl/3, or as soon as the lease's remaining TTL
//     runs out if that is sooner, so a crashed holder is replaced about one
//     lease period after its last renewal, and a holder that stops cleanly
//     (releasing the key) within ttl/3.

var (
	// extendScript renews the lease only if it still holds our token.
	extendScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)
	// releaseScript deletes the lease only if it still holds our token.
	releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)
)

// errLeaseLost means the lease key holds another checker's token, or none.
var errLeaseLost = errors.New("lease held by another checker")

// lease is one checker's side of the leader lease.
type lease struct {
	client  redis.UniversalClient
	key     string
	token   string
	ttl     time.Duration
	timeout time.Duration // bound on each Redis call
	log     zerolog.Logger
}

// newToken names this checker in the lease key: host, pid and 8 random bytes,
// so two checkers never share a token and an operator can tell who holds it.
func newToken() string {
	host, _ := os.Hostname()
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// renewEvery is how often the holder renews and a standby retries.
func (l *lease) renewEvery() time.Duration { return max(l.ttl/3, time.Millisecond) }

// stopBefore is how long before its lease may lapse in Redis the holder stops.
func (l *lease) stopBefore() time.Duration { return l.ttl / 10 }

// acquire tries to take the lease. On success it returns the time until
// which the lease is surely ours. Otherwise it returns how long to wait
// before trying again: the lease's remaining TTL when that is sooner than
// renewEvery, so a lapsed lease is taken the moment it lapses.
func (l *lease) acquire(ctx context.Context) (until time.Time, retry time.Duration, err error) {
	retry = l.renewEvery()
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	sent := time.Now()
	err = l.client.Do(cctx, "SET", l.key, l.token, "NX", "PX", l.ttl.Milliseconds()).Err()
	switch {
	case err == nil:
		return sent.Add(l.ttl), 0, nil
	case !errors.Is(err, redis.Nil): // nil reply: the key exists
		return time.Time{}, retry, fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	// Still ours from an earlier term (a renewal that failed in transit)?
	if until, err := l.extend(ctx); err == nil {
		return until, 0, nil
	} else if !errors.Is(err, errLeaseLost) {
		return time.Time{}, retry, err
	}
	left, err := l.client.PTTL(cctx, l.key).Result()
	if err != nil {
		return time.Time{}, retry, fmt.Errorf("read lease %s: %w", l.key, err)
	}
	// go-redis passes PTTL's -1 (no TTL) and -2 (no key) through unscaled.
	switch {
	case left == -1: // not a lease a checker wrote (no TTL): keep polling
	case left < retry: // lapsing soon, or gone since the SET: try right then
		retry = max(left, time.Millisecond)
	}
	return time.Time{}, retry, nil
}

// extend renews the lease if it is still ours and returns the new time until
// which it surely is; errLeaseLost when it is not ours.
func (l *lease) extend(ctx context.Context) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	sent := time.Now()
	n, err := extendScript.Run(cctx, l.client, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return time.Time{}, fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	if n != 1 {
		return time.Time{}, errLeaseLost
	}
	return sent.Add(l.ttl), nil
}

// keep renews the lease every renewEvery until ctx ends, the lease is found
// in other hands, or it lapses because renewals failed until the validity
// ran out. The caller stops probing when keep returns.
func (l *lease) keep(ctx context.Context, until time.Time) {
	tick := time.NewTicker(l.renewEvery())
	defer tick.Stop()
	lapse := time.NewTimer(time.Until(until) - l.stopBefore())
	defer lapse.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lapse.C:
			l.log.Warn().Str("lease", l.key).Msg("health lease lapsed: could not renew it in time, probing stops")
			return
		case <-tick.C:
			next, err := l.extend(ctx)
			switch {
			case errors.Is(err, errLeaseLost):
				l.log.Warn().Str("lease", l.key).Msg("health lease taken by another checker, probing stops")
				return
			case err != nil:
				if ctx.Err() == nil {
					l.log.Warn().Err(err).Dur("valid_for", time.Until(until)).Msg("renew health lease")
				}
			default:
				until = next
				lapse.Reset(time.Until(until) - l.stopBefore())
			}
		}
	}
}

// release gives the lease back if it is still ours, so a standby takes over
// without waiting for it to lapse. It runs after ctx may have ended, so it
// has its own deadline.
func (l *lease) release(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	if err := releaseScript.Run(cctx, l.client, []string{l.key}, l.token).Err(); err != nil {
		l.log.Warn().Err(err).Str("lease", l.key).Msg("release health lease")
	}
}
