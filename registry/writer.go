package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Writer writes the registry exactly as the reference Python writers do
// (ServiceRegistry.register/deregister/heartbeat and HealthChecker's SETEX),
// so that readers cannot tell the two apart.
type Writer struct {
	client redis.UniversalClient
	keys   Keys
	now    func() time.Time
}

// NewWriter returns a Writer over client.
func NewWriter(client redis.UniversalClient, keys Keys) *Writer {
	return &Writer{client: client, keys: keys, now: time.Now}
}

// document is the reference instance JSON, fields in the reference order.
type document struct {
	ServiceName   string         `json:"service_name"`
	InstanceID    string         `json:"instance_id"`
	Host          string         `json:"host"`
	Port          int            `json:"port"`
	Metadata      map[string]any `json:"metadata"`
	RegisteredAt  float64        `json:"registered_at"`
	LastHeartbeat float64        `json:"last_heartbeat"`
}

type event struct {
	Event      string `json:"event"`
	InstanceID string `json:"instance_id"`
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Register writes one instance in a MULTI/EXEC transaction: SETEX of the
// instance key, SADD to the service set, PUBLISH of "registered".
func (w *Writer) Register(ctx context.Context, service, id, host string, port int, meta map[string]any, ttl time.Duration) error {
	if meta == nil {
		meta = map[string]any{}
	}
	now := unixSeconds(w.now())
	doc, err := json.Marshal(document{service, id, host, port, meta, now, now})
	if err != nil {
		return fmt.Errorf("encode instance %q: %w", id, err)
	}
	ev, _ := json.Marshal(event{"registered", id})
	_, err = w.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetEx(ctx, w.keys.Instance(service, id), doc, ttlSeconds(ttl))
		p.SAdd(ctx, w.keys.Set(service), id)
		p.Publish(ctx, w.keys.Events(service), ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("register %q/%q: %w", service, id, err)
	}
	return nil
}

// Deregister removes one instance in a MULTI/EXEC transaction: DEL, SREM,
// PUBLISH of "deregistered".
func (w *Writer) Deregister(ctx context.Context, service, id string) error {
	ev, _ := json.Marshal(event{"deregistered", id})
	_, err := w.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, w.keys.Instance(service, id))
		p.SRem(ctx, w.keys.Set(service), id)
		p.Publish(ctx, w.keys.Events(service), ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("deregister %q/%q: %w", service, id, err)
	}
	return nil
}

// Heartbeat rewrites the instance key with a new last_heartbeat and a fresh
// TTL, as the reference does (GET, then SETEX). It reports false when the key
// is gone, which tells the caller to register again.
func (w *Writer) Heartbeat(ctx context.Context, service, id string, ttl time.Duration) (bool, error) {
	key := w.keys.Instance(service, id)
	data, err := w.client.Get(ctx, key).Bytes()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat %q/%q: %w", service, id, err)
	}
	// Only last_heartbeat changes: the other fields keep the reference order
	// and their exact text (numbers included).
	var doc struct {
		ServiceName   json.RawMessage `json:"service_name"`
		InstanceID    json.RawMessage `json:"instance_id"`
		Host          json.RawMessage `json:"host"`
		Port          json.RawMessage `json:"port"`
		Metadata      json.RawMessage `json:"metadata"`
		RegisteredAt  json.RawMessage `json:"registered_at"`
		LastHeartbeat float64         `json:"last_heartbeat"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return false, fmt.Errorf("heartbeat %q/%q: decode: %w", service, id, err)
	}
	doc.LastHeartbeat = unixSeconds(w.now())
	out, err := json.Marshal(doc)
	if err != nil {
		return false, fmt.Errorf("heartbeat %q/%q: encode: %w", service, id, err)
	}
	if err := w.client.SetEx(ctx, key, out, ttlSeconds(ttl)).Err(); err != nil {
		return false, fmt.Errorf("heartbeat %q/%q: %w", service, id, err)
	}
	return true, nil
}

// SetHealth writes a health key as HealthChecker.check_instance does:
// SETEX health:<service>:<id> with TTL 3 x interval.
func (w *Writer) SetHealth(ctx context.Context, service, id string, status Status, interval time.Duration) error {
	doc, _ := json.Marshal(map[string]any{"status": status.String(), "checked_at": unixSeconds(w.now())})
	if err := w.client.SetEx(ctx, w.keys.Health(service, id), doc, ttlSeconds(3*interval)).Err(); err != nil {
		return fmt.Errorf("set health of %q/%q: %w", service, id, err)
	}
	return nil
}

// ttlSeconds rounds to whole seconds, as SETEX takes them.
func ttlSeconds(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}

// healthEvent is the health_changed event: the reference events
// ({"event", "instance_id"}) plus the new status, so a reader that knows only
// the reference events still sees a well-formed message.
type healthEvent struct {
	Event      string `json:"event"`
	InstanceID string `json:"instance_id"`
	Status     string `json:"status"`
}

// PublishHealthChanged publishes {"event": "health_changed", "instance_id":
// id, "status": status} on the events channel of service. The health checker
// sends it after writing a health key whose status changed.
func (w *Writer) PublishHealthChanged(ctx context.Context, service, id string, status Status) error {
	ev, _ := json.Marshal(healthEvent{"health_changed", id, status.String()})
	if err := w.client.Publish(ctx, w.keys.Events(service), ev).Err(); err != nil {
		return fmt.Errorf("publish health of %q/%q: %w", service, id, err)
	}
	return nil
}

// RemoveMembers removes ids from the set of service with one SREM, as the
// reference discover() does for ids whose instance key has expired. Nothing
// is published, as in the reference.
func (w *Writer) RemoveMembers(ctx context.Context, service string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	if err := w.client.SRem(ctx, w.keys.Set(service), members...).Err(); err != nil {
		return fmt.Errorf("remove %d members of service %q: %w", len(ids), service, err)
	}
	return nil
}

// SetHealthAt is SetHealth with checked_at given by the caller, the moment
// the check was made, instead of read from the writer's clock. The TTL is
// SetHealth's; the document is byte for byte what the reference's
// json.dumps writes: {"status": "healthy", "checked_at": 1764090000.123456}.
func (w *Writer) SetHealthAt(ctx context.Context, service, id string, status Status, checkedAt time.Time, interval time.Duration) error {
	doc := `{"status": "` + status.String() + `", "checked_at": ` + pythonFloat(unixSeconds(checkedAt)) + `}`
	if err := w.client.SetEx(ctx, w.keys.Health(service, id), doc, ttlSeconds(3*interval)).Err(); err != nil {
		return fmt.Errorf("set health of %q/%q: %w", service, id, err)
	}
	return nil
}

// pythonFloat formats f as Python's repr does for the magnitudes of Unix
// times: the shortest digits that read back as f, with ".0" when whole.
func pythonFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}
