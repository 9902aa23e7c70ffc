package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDocumentSize bounds an instance or health document. A larger value is
// not a registration any writer produces, so it is skipped rather than parsed.
const MaxDocumentSize = 64 << 10

// ErrMalformed marks registry data that cannot be served. The instance is
// skipped; the rest of the service keeps serving.
var ErrMalformed = errors.New("malformed registry data")

// Instance is one registered instance of a service, decoded tolerantly from
// its JSON document.
type Instance struct {
	Service string
	ID      string
	// Host as written: an IPv4 or IPv6 address, or a host name.
	Host string
	// Addr is Host parsed as an address; invalid when Host is a name.
	Addr     netip.Addr
	Port     uint16
	Weight   uint16 // metadata "weight", default 1, clamped to 0..65535
	Priority uint16 // metadata "priority", default 1, clamped to 0..65535
	// Meta holds the metadata values as text: strings as they are, numbers
	// and booleans in their JSON spelling, objects and lists as JSON.
	Meta Metadata
	// Tags is metadata "tags" when it is a list of strings.
	Tags          []string
	RegisteredAt  time.Time
	LastHeartbeat time.Time
	Health        Health
	// LeaseEnds is set when the instance key's TTL runs out soon (within
	// Options.LeaseWarning) and no heartbeat has renewed it yet: answers
	// should not be cached past it. Zero otherwise.
	LeaseEnds time.Time
}

// Draining reports whether the instance finishes its connections and takes
// no new ones: metadata "draining" true, or health status draining.
func (in *Instance) Draining() bool {
	if in.Health.Status == StatusDraining {
		return true
	}
	switch strings.ToLower(in.Meta.Get("draining")) {
	case "true", "1", "yes", "on":
		return true
	}
	return false
}

// HasTag reports whether metadata "tags" holds tag (ASCII case-insensitive,
// as DNS names are).
func (in *Instance) HasTag(tag string) bool {
	for _, t := range in.Tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// IsName reports whether the instance's host is a name rather than an address.
func (in *Instance) IsName() bool { return !in.Addr.IsValid() }

// sameServing reports whether a and b answer the same: heartbeat times differ
// on every heartbeat and must not count as a change.
func (in *Instance) sameServing(b *Instance) bool {
	if in.ID != b.ID || in.Host != b.Host || in.Port != b.Port || in.Weight != b.Weight ||
		in.Priority != b.Priority || in.Health.Status != b.Health.Status || !slices.Equal(in.Meta, b.Meta) ||
		!in.LeaseEnds.Equal(b.LeaseEnds) {
		return false
	}
	return true
}

// sameDocument reports whether b decodes from the same document as in, but
// for the heartbeat times.
func (in *Instance) sameDocument(b *Instance) bool {
	if in.Host != b.Host || in.Port != b.Port || in.Weight != b.Weight || in.Priority != b.Priority ||
		!slices.Equal(in.Meta, b.Meta) || !in.RegisteredAt.Equal(b.RegisteredAt) {
		return false
	}
	return true
}

type instanceDoc struct {
	Host          json.RawMessage            `json:"host"`
	Port          json.RawMessage            `json:"port"`
	Metadata      map[string]json.RawMessage `json:"metadata"`
	RegisteredAt  json.RawMessage            `json:"registered_at"`
	LastHeartbeat json.RawMessage            `json:"last_heartbeat"`
}

// DecodeInstance decodes the document stored at the instance key of
// (service, id). The key's id wins over the document's instance_id: the set
// member is what the writer registered. Any error wraps [ErrMalformed].
func DecodeInstance(service, id string, data []byte) (Instance, error) {
	in := Instance{Service: service, ID: id, Weight: 1, Priority: 1}
	if len(data) > MaxDocumentSize {
		return in, fmt.Errorf("%w: instance document is %d bytes (limit %d)", ErrMalformed, len(data), MaxDocumentSize)
	}
	var doc instanceDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return in, fmt.Errorf("%w: instance JSON: %v", ErrMalformed, err)
	}
	host, err := jsonString(doc.Host)
	if err != nil || host == "" {
		return in, fmt.Errorf("%w: host must be a non-empty string", ErrMalformed)
	}
	in.Host = host
	if addr, err := netip.ParseAddr(host); err == nil && addr.Zone() == "" {
		in.Addr = addr.Unmap()
	} else if !validHostName(host) {
		return in, fmt.Errorf("%w: host %q is neither an address nor a host name", ErrMalformed, host)
	}
	port, ok := jsonNumber(doc.Port)
	if !ok || port < 1 || port > 65535 || port != math.Trunc(port) {
		return in, fmt.Errorf("%w: port %s is not 1..65535", ErrMalformed, clip(doc.Port))
	}
	in.Port = uint16(port)
	if len(doc.Metadata) > 0 {
		in.Meta = make(Metadata, 0, len(doc.Metadata))
		for k, raw := range doc.Metadata {
			in.Meta = append(in.Meta, MetaEntry{k, metaText(raw)})
		}
		in.Meta.sort()
		in.Weight = metaUint16(doc.Metadata["weight"], 1)
		in.Priority = metaUint16(doc.Metadata["priority"], 1)
		var tags []string
		if raw, ok := doc.Metadata["tags"]; ok && json.Unmarshal(raw, &tags) == nil {
			in.Tags = tags
		}
	}
	in.RegisteredAt = unixTime(doc.RegisteredAt)
	in.LastHeartbeat = unixTime(doc.LastHeartbeat)
	return in, nil
}

// validHostName accepts what a resolver could look up: dot-separated labels
// of letters, digits, '-' and '_', at most 253 octets, the last one not all
// digits: a host name never has the dotted-decimal form (RFC 1123 2.1), so
// "999.1.1.1" or "10.0.0" is a bad address, not a name.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	numeric := false
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		numeric = true
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
			numeric = numeric && c >= '0' && c <= '9'
		}
	}
	return !numeric
}

func jsonString(raw json.RawMessage) (string, error) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// jsonNumber reads a JSON number or a string holding one ("8080").
func jsonNumber(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	if raw[0] == '"' {
		s, err := jsonString(raw)
		if err != nil {
			return 0, false
		}
		raw = []byte(strings.TrimSpace(s))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// metaUint16 reads a numeric metadata value, tolerating strings, clamping to
// 0..65535 and falling back to def when absent or not a number.
func metaUint16(raw json.RawMessage, def uint16) uint16 {
	if raw == nil {
		return def
	}
	f, ok := jsonNumber(raw)
	if !ok {
		return def
	}
	return uint16(math.Max(0, math.Min(65535, math.Round(f))))
}

func metaText(raw json.RawMessage) string {
	if s, err := jsonString(raw); err == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

func unixTime(raw json.RawMessage) time.Time {
	f, ok := jsonNumber(raw)
	if !ok || f <= 0 || f > 1e11 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

func clip(raw json.RawMessage) string {
	const limit = 32
	if len(raw) > limit {
		return string(raw[:limit]) + "..."
	}
	if len(raw) == 0 {
		return "(missing)"
	}
	return string(raw)
}
