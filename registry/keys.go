package registry

import "strings"

// Keys names every Redis key and channel of the registry layout, so the
// mapping between service names and keys lives in one place.
type Keys struct {
	// Prefix of service sets, instance keys and event channels (default "services").
	Prefix string
	// HealthPrefix of health keys (default "health").
	HealthPrefix string
}

// DefaultKeys is the layout the reference writers use.
func DefaultKeys() Keys { return Keys{Prefix: "services", HealthPrefix: "health"} }

const instancesInfix = ":instances:"

// Set is the key of the SET of instance ids of service.
func (k Keys) Set(service string) string { return k.Prefix + ":" + service }

// Instance is the key of one instance's JSON document.
func (k Keys) Instance(service, id string) string {
	return k.Prefix + ":" + service + instancesInfix + id
}

// Events is the pub/sub channel of registration events of service.
func (k Keys) Events(service string) string { return k.Prefix + ":" + service + ":events" }

// Health is the key of one instance's health document.
func (k Keys) Health(service, id string) string {
	return k.HealthPrefix + ":" + service + ":" + id
}

// EventsPattern matches the event channels of every service (for PSUBSCRIBE).
func (k Keys) EventsPattern() string { return k.Prefix + ":*:events" }

// SetPattern matches service sets (and, since Redis globbing cannot tell them
// apart, instance keys too; SCAN filters by TYPE set).
func (k Keys) SetPattern() string { return k.Prefix + ":*" }

// HealthPattern matches every health key.
func (k Keys) HealthPattern() string { return k.HealthPrefix + ":*" }

// KeyKind says what a registry key holds.
type KeyKind uint8

// Kinds of registry keys.
const (
	KindOther    KeyKind = iota // not a registry key (mesh:*, an events channel name, ...)
	KindSet                     // services:<name>
	KindInstance                // services:<name>:instances:<id>
	KindHealth                  // health:<name>:<id>
)

// Parse tells what key is and which service and instance it belongs to.
// Service names may contain ':'; instance ids may not (the reference writer
// uses UUIDs), which is what makes health keys unambiguous.
func (k Keys) Parse(key string) (kind KeyKind, service, id string) {
	if rest, ok := strings.CutPrefix(key, k.Prefix+":"); ok && rest != "" {
		if i := strings.LastIndex(rest, instancesInfix); i > 0 {
			id = rest[i+len(instancesInfix):]
			if id == "" || strings.Contains(id, ":") {
				return KindOther, "", ""
			}
			return KindInstance, rest[:i], id
		}
		if strings.HasSuffix(rest, ":events") {
			return KindOther, "", ""
		}
		return KindSet, rest, ""
	}
	if rest, ok := strings.CutPrefix(key, k.HealthPrefix+":"); ok {
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 || i == len(rest)-1 {
			return KindOther, "", ""
		}
		return KindHealth, rest[:i], rest[i+1:]
	}
	return KindOther, "", ""
}

// ServiceOfChannel returns the service whose events channel is channel.
func (k Keys) ServiceOfChannel(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, k.Prefix+":")
	if !ok {
		return "", false
	}
	svc, ok := strings.CutSuffix(rest, ":events")
	return svc, ok && svc != ""
}
