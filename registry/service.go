package registry

// Service is an immutable snapshot of one service as the view sees it.
// Consumers must not modify it; the view replaces it whole on every change.
type Service struct {
	Name string
	// Instances are every live instance (instance key present and valid),
	// sorted by id. The instances are shared with the view and with later
	// snapshots in which they did not change (the view replaces an instance
	// rather than modify it), so a registry is held once, not once per
	// snapshot.
	Instances []*Instance
	// Serving are the instances the health mode serves, sorted by id; in
	// panic mode every live instance.
	Serving []*Instance
	// Panic is set when too few live instances are healthy (under
	// Options.PanicThreshold) and every live instance is served.
	Panic bool
}

// Instance returns the live instance with the given id.
func (s *Service) Instance(id string) (*Instance, bool) {
	for _, in := range s.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return nil, false
}
