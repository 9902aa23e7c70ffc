package dns

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/regdns/regdns/registry"
)

// Catalog is what the DNS side knows of the registry: the services by their
// case-folded DNS label, each with its instances indexed by folded id. The
// registry view feeds it through Update on every change; queries only read.
type Catalog struct {
	synced func() bool
	now    func() time.Time
	log    zerolog.Logger

	// notify serialises updates and the calls to listeners, so a listener
	// sees every service's changes in order.
	notify    sync.Mutex
	listeners []func(label string, s *service)

	mu sync.RWMutex
	// byLabel maps a folded label to the service answering it.
	byLabel map[string]*service
	// names maps a folded label to every registry name folding to it, so a
	// collision ("User" and "user") resolves the same way whatever the
	// order of updates: the smallest name wins.
	names map[string][]string
	// latest holds the last snapshot of every registry name.
	latest map[string]*registry.Service
	warned map[string]bool

	// serial is the SOA serial; serialPending is set when the registry
	// changed in the second the serial already names.
	serialMu      sync.Mutex
	serial        uint32
	serialPending bool
}

// service is the DNS form of one registry service. It is immutable but for
// the rotation counter.
type service struct {
	name string // registry spelling
	// label is the folded DNS label answering it.
	label string
	snap  *registry.Service
	// serving are the instances served, in registry (id) order.
	serving []*registry.Instance
	// live indexes every live instance by folded id.
	live map[string]*registry.Instance
	// turn counts responses, for round-robin rotation.
	turn atomic.Uint64
}

// NewCatalog returns an empty catalog. synced tells whether the registry
// view reflects Redis; while it does not, unknown names get SERVFAIL.
func NewCatalog(synced func() bool, log zerolog.Logger) *Catalog {
	c := &Catalog{
		synced:  synced,
		now:     time.Now,
		log:     log,
		byLabel: map[string]*service{},
		names:   map[string][]string{},
		latest:  map[string]*registry.Service{},
		warned:  map[string]bool{},
	}
	c.serial = uint32(c.now().Unix())
	return c
}

// Synced reports whether the registry view is in sync with Redis.
func (c *Catalog) Synced() bool { return c.synced() }

// Serial is the SOA serial: the time, in seconds, of the last registry
// change. It only grows, and never runs ahead of the clock, so a restart
// (which starts from the clock) never lowers it. Changes within one second
// share it, and the serial moves to the next second as soon as that has
// come, so every change is followed by a new serial within a second.
func (c *Catalog) Serial() uint32 {
	c.serialMu.Lock()
	defer c.serialMu.Unlock()
	if now := uint32(c.now().Unix()); c.serialPending && now > c.serial {
		c.serial, c.serialPending = now, false
	}
	return c.serial
}

func (c *Catalog) bumpSerial() {
	c.serialMu.Lock()
	defer c.serialMu.Unlock()
	if now := uint32(c.now().Unix()); now > c.serial {
		c.serial, c.serialPending = now, false
	} else {
		c.serialPending = true
	}
}

// Update records the new snapshot of service name; svc nil removes it. It
// has the signature of registry.Options.OnChange.
func (c *Catalog) Update(name string, svc *registry.Service) {
	c.notify.Lock()
	defer c.notify.Unlock()
	label, s, changed := c.update(name, svc)
	if changed {
		for _, fn := range c.listeners {
			fn(label, s)
		}
	}
}

// listen calls fn with every service now, and on every change after; s is
// nil when the label is no longer served.
func (c *Catalog) listen(fn func(label string, s *service)) {
	c.notify.Lock()
	defer c.notify.Unlock()
	c.listeners = append(c.listeners, fn)
	for _, s := range c.all() {
		fn(s.label, s)
	}
}

// replay calls fn with every service now, in step with the listeners.
func (c *Catalog) replay(fn func(label string, s *service)) {
	c.notify.Lock()
	defer c.notify.Unlock()
	for _, s := range c.all() {
		fn(s.label, s)
	}
}

// update applies one change and says which label now answers what.
func (c *Catalog) update(name string, svc *registry.Service) (label string, s *service, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bumpSerial()
	if !validLabel(name) {
		if svc != nil && !c.warned[name] {
			c.warned[name] = true
			c.log.Warn().Str("service", name).Msg("service name is not a valid DNS label: not served")
		}
		if svc == nil {
			delete(c.warned, name)
		}
		return "", nil, false
	}
	label = fold(name)
	names := c.names[label]
	if svc == nil {
		delete(c.latest, name)
		names = slices.DeleteFunc(names, func(n string) bool { return n == name })
	} else {
		c.latest[name] = svc
		if !slices.Contains(names, name) {
			names = append(names, name)
			slices.Sort(names)
			if len(names) > 1 {
				c.log.Warn().Strs("services", names).Str("label", label).
					Msg("service names differ only in case: the first is served")
			}
		}
	}
	if len(names) == 0 {
		delete(c.names, label)
		delete(c.byLabel, label)
		return label, nil, true
	}
	c.names[label] = names
	winner := names[0]
	prev := c.byLabel[label]
	s = c.build(label, winner, c.latest[winner], prev)
	c.byLabel[label] = s
	return label, s, true
}

// build derives the DNS form of a snapshot. The rotation counter carries
// over so round-robin keeps turning across changes.
func (c *Catalog) build(label, name string, snap *registry.Service, prev *service) *service {
	s := &service{name: name, label: label, snap: snap, live: make(map[string]*registry.Instance, len(snap.Instances))}
	if prev != nil {
		s.turn.Store(prev.turn.Load())
	}
	for _, in := range snap.Instances {
		if !validLabel(in.ID) {
			if key := name + "/" + in.ID; !c.warned[key] {
				c.warned[key] = true
				c.log.Warn().Str("service", name).Str("instance", in.ID).
					Msg("instance id is not a valid DNS label: not served")
			}
			continue
		}
		// Ids that differ only in case share a DNS name: the smallest wins,
		// as for service names, whatever the order of the snapshot.
		if prev, ok := s.live[fold(in.ID)]; ok && prev.ID < in.ID {
			continue
		}
		s.live[fold(in.ID)] = in
	}
	for _, sv := range snap.Serving {
		// Only the instance that owns the name serves, and once.
		if in, ok := s.live[fold(sv.ID)]; ok && in.ID == sv.ID {
			s.serving = append(s.serving, in)
		}
	}
	return s
}

// lookup returns the service answering a folded label.
func (c *Catalog) lookup(label string) (*service, bool) {
	c.mu.RLock()
	s, ok := c.byLabel[label]
	c.mu.RUnlock()
	return s, ok
}

// Services returns the labels served, sorted (for tests and tools).
func (c *Catalog) Services() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.byLabel))
	for l := range c.byLabel {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// protocol is the transport an instance serves, from metadata "protocol".
func protocol(in *registry.Instance) string {
	if p := strings.ToLower(in.Meta.Get("protocol")); p == "udp" {
		return "udp"
	}
	return "tcp"
}

// all returns every service served, sorted by label.
func (c *Catalog) all() []*service {
	c.mu.RLock()
	out := make([]*service, 0, len(c.byLabel))
	for _, s := range c.byLabel {
		out = append(out, s)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b *service) int { return strings.Compare(a.label, b.label) })
	return out
}
