package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Status is an instance's health as the health checker wrote it.
type Status uint8

// Health statuses. A missing or expired health key is StatusUnknown.
const (
	StatusUnknown Status = iota
	StatusHealthy
	StatusUnhealthy
	// StatusDraining: finishing its connections, taking no new ones.
	StatusDraining
)

func (s Status) String() string {
	switch s {
	case StatusHealthy:
		return "healthy"
	case StatusUnhealthy:
		return "unhealthy"
	case StatusDraining:
		return "draining"
	default:
		return "unknown"
	}
}

// Health is the decoded health document of an instance.
type Health struct {
	Status    Status
	CheckedAt time.Time
}

// DecodeHealth decodes a health document. An unrecognised status is unknown,
// as the reference HealthAwareLoadBalancer treats anything but "healthy".
func DecodeHealth(data []byte) (Health, error) {
	if len(data) > MaxDocumentSize {
		return Health{}, fmt.Errorf("%w: health document is %d bytes", ErrMalformed, len(data))
	}
	var doc struct {
		Status    string          `json:"status"`
		CheckedAt json.RawMessage `json:"checked_at"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return Health{}, fmt.Errorf("%w: health JSON: %v", ErrMalformed, err)
	}
	h := Health{CheckedAt: unixTime(doc.CheckedAt)}
	switch strings.ToLower(doc.Status) {
	case "healthy":
		h.Status = StatusHealthy
	case "unhealthy":
		h.Status = StatusUnhealthy
	case "draining":
		h.Status = StatusDraining
	}
	return h, nil
}

// HealthMode decides which health statuses are served.
type HealthMode uint8

// Health modes (config health.mode).
const (
	// ModeHealthy serves only instances whose health key says healthy, as the
	// reference HealthAwareLoadBalancer does.
	ModeHealthy HealthMode = iota
	// ModeHealthyOrUnknown also serves instances no checker has judged.
	ModeHealthyOrUnknown
	// ModeAny serves every live instance, unhealthy ones included.
	ModeAny
)

// ParseHealthMode parses the config spelling of a health mode.
func ParseHealthMode(s string) (HealthMode, error) {
	switch s {
	case "healthy", "":
		return ModeHealthy, nil
	case "healthy_or_unknown":
		return ModeHealthyOrUnknown, nil
	case "any":
		return ModeAny, nil
	}
	return 0, fmt.Errorf("health mode %q: want healthy, healthy_or_unknown or any", s)
}

func (m HealthMode) String() string {
	switch m {
	case ModeHealthyOrUnknown:
		return "healthy_or_unknown"
	case ModeAny:
		return "any"
	default:
		return "healthy"
	}
}

// Serves reports whether an instance with status s is served in mode m.
// A draining instance is served in every mode (with weight 0, see
// Instance.Draining), so its connections can finish.
func (m HealthMode) Serves(s Status) bool {
	if s == StatusDraining {
		return true
	}
	switch m {
	case ModeAny:
		return true
	case ModeHealthyOrUnknown:
		return s != StatusUnhealthy
	default:
		return s == StatusHealthy
	}
}
