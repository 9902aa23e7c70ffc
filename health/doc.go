// Package health is the active health checker of `regdns health`: it finds
// every registered instance, probes it, and writes health:<service>:<id>
// exactly as the reference Python HealthChecker.check_instance does, so that
// the reference HealthAwareLoadBalancer and regdns's own view agree on which
// instances are healthy.
//
// What it writes, per instance and per round (every [Options.Interval]):
//
//	SETEX health:<service>:<id> <3 x interval, whole seconds> {"status": "healthy"|"unhealthy"|"unknown", "checked_at": <unix seconds float>}
//
// and, only when the written status changes, one message on the service's
// events channel, a compatible extension of the reference events:
//
//	PUBLISH services:<service>:events {"event": "health_changed", "instance_id": "<id>", "status": "<status>"}
//
// # Probes
//
// The instance metadata "health_check" picks the probe: "http" (the default)
// GETs http://host:port<health_path> (metadata "health_path", default
// "/health") and counts any 2xx as healthy; "tcp" connects to host:port;
// "none" is never probed and never written. Neither is an instance whose
// health key says "draining": that status is an operator's, and stays until
// the operator removes it. Every probe is bounded by
// [Options.Timeout]. A probe that panics, or an unrecognised health_check,
// yields "unknown", as the reference does when its check raises.
//
// # Hysteresis
//
// A status flips only after [Options.Rise] consecutive healthy results (to
// healthy) or [Options.Fall] consecutive failures (to unhealthy), as Caddy's
// passes/fails. An instance's first result is written as it is. A checker
// that takes over from another continues from the status already in Redis.
//
// # Several checkers
//
// Checkers elect one prober with a lease in Redis (see lease.go): SET NX PX
// acquires it, a compare-and-extend script renews it every third of
// [Options.LeaseTTL], and the holder stops probing as soon as it cannot prove
// it still holds the lease. Standbys retry when the lease's remaining TTL runs
// out, so a crashed holder is replaced within one lease period; a holder that
// stops cleanly releases the lease, and a standby takes over within a third
// of a lease period. A lease was chosen over splitting instances between
// live checkers because it needs no membership protocol and can never
// double-probe during a rebalance; one checker with a bounded pool of
// concurrent probes ([Options.Concurrency]) covers 10,000 instances per
// interval.
package health
