// Package registry reads the Redis service registry described in
// shared/registry-format.md and keeps an in-memory view of it current by push.
//
// The layout is the one the reference Python writers leave:
//
//	services:<name>                  SET of instance ids
//	services:<name>:instances:<id>   STRING, JSON instance, with a TTL renewed by heartbeats
//	services:<name>:events           pub/sub channel: {"event": "registered"|"deregistered", "instance_id": ...}
//	health:<name>:<id>               STRING, JSON {"status": ..., "checked_at": ...}, with a TTL
//
// The package knows nothing about DNS. [View] holds immutable [Service]
// snapshots, one per service, and reports every change through a callback so
// that a consumer (the DNS server) can rebuild what it derives from a service
// without ever calling Redis on its own hot path. [Store] is the only code that
// issues Redis reads; a refresh of one service costs at most two round trips
// however many instances it has. [Writer] writes the layout exactly as the
// reference writers do, for the embedded dev mode, tests and sidecars.
package registry
