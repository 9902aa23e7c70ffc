package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store issues every Redis read of the registry. Each method is bounded by
// the context the caller gives it, and batches its commands in pipelines: a
// pipeline of GETs works alike on standalone, Sentinel and Cluster, where a
// cross-slot MGET would not.
type Store struct {
	client redis.UniversalClient
	keys   Keys
	// chunk bounds the commands in one pipeline so a 100k-instance sync
	// does not buffer everything at once.
	chunk int
}

// NewStore returns a Store reading the layout keys through client.
func NewStore(client redis.UniversalClient, keys Keys) *Store {
	return &Store{client: client, keys: keys, chunk: 8192}
}

// Keys returns the key layout the store reads.
func (s *Store) Keys() Keys { return s.keys }

// Entry is what Redis holds for one instance id: its document, its health
// document and the time left on each key.
type Entry struct {
	ID string
	// Data is the instance document; nil when the key does not exist.
	Data []byte
	// TTL left on the instance key; 0 when it has none.
	TTL time.Duration
	// WrongType is set when the instance key holds something other than a string.
	WrongType bool
	// HealthData is the health document; nil when the key does not exist.
	HealthData []byte
	// HealthTTL left on the health key; 0 when it has none.
	HealthTTL time.Duration
}

// entryCmds are the pipelined commands that read one Entry.
type entryCmds struct {
	id        string
	get, hget *redis.StringCmd
	ttl, httl *redis.DurationCmd
}

// queueEntry queues the reads of one entry. healthTTL asks for the health
// key's TTL too: full re-reads leave it out (a quarter of their commands),
// since a health key that expires is seen by its keyspace notification or
// by the next re-read, and only the instance key's expiry is timed locally.
func (s *Store) queueEntry(p redis.Pipeliner, ctx context.Context, service, id string, healthTTL bool) entryCmds {
	ik, hk := s.keys.Instance(service, id), s.keys.Health(service, id)
	c := entryCmds{
		id:   id,
		get:  p.Get(ctx, ik),
		ttl:  p.PTTL(ctx, ik),
		hget: p.Get(ctx, hk),
	}
	if healthTTL {
		c.httl = p.PTTL(ctx, hk)
	}
	return c
}

// result turns the replies into an Entry. A missing key is not an error;
// WRONGTYPE marks only this entry; any other error fails the whole read,
// because "Redis did not answer" must never look like "no instances".
func (c entryCmds) result() (Entry, error) {
	e := Entry{ID: c.id}
	data, err := c.get.Bytes()
	switch {
	case err == nil:
		e.Data = data
	case errors.Is(err, redis.Nil):
	case isWrongType(err):
		e.WrongType = true
	default:
		return e, err
	}
	hdata, err := c.hget.Bytes()
	switch {
	case err == nil:
		e.HealthData = hdata
	case errors.Is(err, redis.Nil), isWrongType(err):
	default:
		return e, err
	}
	e.TTL = ttlOf(c.ttl)
	e.HealthTTL = ttlOf(c.httl)
	return e, nil
}

// ttlOf reads a PTTL reply: 0 when the key has no TTL or is gone. PTTL
// says 0 for a key in its last millisecond, which must not read as "no TTL".
func ttlOf(c *redis.DurationCmd) time.Duration {
	if c == nil {
		return 0 // not asked
	}
	d, err := c.Result()
	if err != nil || d < 0 {
		return 0
	}
	return max(d, time.Millisecond)
}

func isWrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// exec runs a pipeline and tolerates per-command "soft" errors (missing
// keys, WRONGTYPE), which each command's result reports on its own.
func exec(ctx context.Context, p redis.Pipeliner) error {
	_, err := p.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) || isWrongType(err) {
		return nil
	}
	return err
}

// Members returns the instance ids in the set of service. A set that does not
// exist is empty; a key of another type is ErrMalformed.
func (s *Store) Members(ctx context.Context, service string) ([]string, error) {
	ids, err := s.client.SMembers(ctx, s.keys.Set(service)).Result()
	if isWrongType(err) {
		return nil, fmt.Errorf("%w: %s is not a set", ErrMalformed, s.keys.Set(service))
	}
	if err != nil {
		return nil, fmt.Errorf("read members of service %q: %w", service, err)
	}
	return ids, nil
}

// IsMember reports whether id is in the set of service.
func (s *Store) IsMember(ctx context.Context, service, id string) (bool, error) {
	ok, err := s.client.SIsMember(ctx, s.keys.Set(service), id).Result()
	if isWrongType(err) {
		return false, fmt.Errorf("%w: %s is not a set", ErrMalformed, s.keys.Set(service))
	}
	if err != nil {
		return false, fmt.Errorf("read membership in service %q: %w", service, err)
	}
	return ok, nil
}

// Entries reads the entries of the given ids of service in one round trip.
func (s *Store) Entries(ctx context.Context, service string, ids []string) ([]Entry, error) {
	out := make([]Entry, 0, len(ids))
	for start := 0; start < len(ids); start += s.chunk / 4 {
		end := min(start+s.chunk/4, len(ids))
		p := s.client.Pipeline()
		cmds := make([]entryCmds, 0, end-start)
		for _, id := range ids[start:end] {
			cmds = append(cmds, s.queueEntry(p, ctx, service, id, true))
		}
		if err := exec(ctx, p); err != nil {
			return nil, fmt.Errorf("read instances of service %q: %w", service, err)
		}
		for _, c := range cmds {
			e, err := c.result()
			if err != nil {
				return nil, fmt.Errorf("read instance %q of service %q: %w", c.id, service, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// Service reads the whole of one service in two round trips: SMEMBERS, then
// one pipeline of the instance and health keys of every member.
func (s *Store) Service(ctx context.Context, service string) ([]Entry, error) {
	ids, err := s.Members(ctx, service)
	if err != nil {
		return nil, err
	}
	return s.Entries(ctx, service, ids)
}

// ServiceNames lists every service that has a set, by SCAN (never KEYS: the
// database is shared with other data). In Cluster mode every master is scanned.
func (s *Store) ServiceNames(ctx context.Context) ([]string, error) {
	names, _, err := s.scanServices(ctx)
	return names, err
}

// scanServices is ServiceNames, and in Cluster mode also the addresses of
// the masters it scanned (the client's view of the topology at that moment).
func (s *Store) scanServices(ctx context.Context) ([]string, map[string]bool, error) {
	var (
		names   []string
		scanned map[string]bool
		mu      sync.Mutex
	)
	scanNode := func(ctx context.Context, node *redis.Client) error {
		var local []string
		iter := node.ScanType(ctx, 0, s.keys.SetPattern(), 1000, "set").Iterator()
		for iter.Next(ctx) {
			if kind, svc, _ := s.keys.Parse(iter.Val()); kind == KindSet {
				local = append(local, svc)
			}
		}
		mu.Lock() // ForEachMaster scans nodes concurrently
		names = append(names, local...)
		if scanned != nil {
			scanned[node.Options().Addr] = true
		}
		mu.Unlock()
		return iter.Err()
	}
	var err error
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		scanned = map[string]bool{}
		err = c.ForEachMaster(ctx, scanNode)
	case *redis.Client:
		err = scanNode(ctx, c)
	default:
		err = fmt.Errorf("unsupported redis client %T", s.client)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	return names, scanned, nil
}

// Snapshot reads every given service: one pipeline of SMEMBERS for all of
// them, then pipelines of their entries. A service whose set holds another
// type is left out of the result (and reported through skipped).
func (s *Store) Snapshot(ctx context.Context, names []string) (map[string][]Entry, map[string]error, error) {
	members := make(map[string][]string, len(names))
	skipped := map[string]error{}
	for start := 0; start < len(names); start += s.chunk {
		end := min(start+s.chunk, len(names))
		p := s.client.Pipeline()
		cmds := make([]*redis.StringSliceCmd, 0, end-start)
		for _, n := range names[start:end] {
			cmds = append(cmds, p.SMembers(ctx, s.keys.Set(n)))
		}
		if err := exec(ctx, p); err != nil {
			return nil, nil, fmt.Errorf("read service sets: %w", err)
		}
		for i, c := range cmds {
			n := names[start+i]
			ids, err := c.Result()
			switch {
			case err == nil:
				members[n] = ids
			case isWrongType(err):
				skipped[n] = fmt.Errorf("%w: %s is not a set", ErrMalformed, s.keys.Set(n))
			default:
				return nil, nil, fmt.Errorf("read members of service %q: %w", n, err)
			}
		}
	}
	out := make(map[string][]Entry, len(members))
	// Batch entries of many services into shared pipelines.
	type pending struct {
		service string
		cmds    entryCmds
	}
	var batch []pending
	p := s.client.Pipeline()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := exec(ctx, p); err != nil {
			return fmt.Errorf("read instances: %w", err)
		}
		for _, b := range batch {
			e, err := b.cmds.result()
			if err != nil {
				return fmt.Errorf("read instance %q of service %q: %w", b.cmds.id, b.service, err)
			}
			out[b.service] = append(out[b.service], e)
		}
		batch = batch[:0]
		p = s.client.Pipeline()
		return nil
	}
	for n, ids := range members {
		if _, ok := out[n]; !ok {
			out[n] = make([]Entry, 0, len(ids))
		}
		for _, id := range ids {
			batch = append(batch, pending{n, s.queueEntry(p, ctx, n, id, false)})
			if len(batch)*3 >= s.chunk {
				if err := flush(); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return out, skipped, nil
}

// TTLs returns the time left on each key: >0 remaining, 0 no expiry, <0 gone.
func (s *Store) TTLs(ctx context.Context, keys []string) ([]time.Duration, error) {
	p := s.client.Pipeline()
	cmds := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		cmds[i] = p.PTTL(ctx, k)
	}
	if err := exec(ctx, p); err != nil {
		return nil, fmt.Errorf("read key TTLs: %w", err)
	}
	out := make([]time.Duration, len(keys))
	for i, c := range cmds {
		d, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("read TTL of %q: %w", keys[i], err)
		}
		switch {
		case d == -2: // go-redis passes PTTL's "no such key" through unscaled
			out[i] = -1
		case d < 0:
			out[i] = 0
		default:
			out[i] = max(d, time.Millisecond) // 0 is "in its last millisecond"
		}
	}
	return out, nil
}

// Health reads one health key and its TTL in one round trip.
func (s *Store) Health(ctx context.Context, service, id string) (data []byte, ttl time.Duration, err error) {
	p := s.client.Pipeline()
	get := p.Get(ctx, s.keys.Health(service, id))
	pttl := p.PTTL(ctx, s.keys.Health(service, id))
	if err := exec(ctx, p); err != nil {
		return nil, 0, fmt.Errorf("read health of %q/%q: %w", service, id, err)
	}
	data, err = get.Bytes()
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, 0, fmt.Errorf("read health of %q/%q: %w", service, id, err)
	}
	return data, ttlOf(pttl), nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.client.Ping(ctx).Err()
}
