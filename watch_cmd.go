package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/registry"
)

// watchCmd is `regdns watch [SERVICE]`: it follows the registry live and
// prints one line per event until ctx ends. It always shows the registered /
// deregistered events the writers publish; when Redis already has keyspace
// notifications on (regdns serve turns them on; watch never changes the
// server's configuration), it also shows what has no event of its own:
// heartbeats, expiries, health changes and set cleanups.
func watchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("watch", stderr).redisFlag()
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "Usage: regdns watch [flags] [SERVICE]\n\n")
		f.fs.PrintDefaults()
	}
	flagArgs, pos, err := splitPositional(f.fs, args)
	if err != nil {
		return err
	}
	cfg, err := f.load(flagArgs, getenv, nil)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("at most one SERVICE, got %q", pos)
	}
	var service string
	if len(pos) == 1 {
		service = pos[0]
	}
	log := newLogger(cfg, stderr)
	client, db, err := newRedisClient(cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()

	keyspace, err := keyspaceNotificationsOn(ctx, client, cfg.Redis.Timeout.Duration, log)
	if err != nil {
		return fmt.Errorf("redis %s: %w", config.RedactURL(cfg.Redis.URL), err)
	}
	keys := keysOf(cfg)
	ksPrefix := fmt.Sprintf("__keyspace@%d__:", db)
	patterns := watchPatterns(keys, service, ksPrefix, keyspace)

	ps := client.PSubscribe(ctx, patterns...)
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions(
		redis.WithChannelSize(10000),
		// Find a dead connection within a second or two; go-redis then
		// reconnects and subscribes again.
		redis.WithChannelHealthCheckInterval(time.Second),
	)
	p := &eventPrinter{
		out:      stdout,
		store:    registry.NewStore(client, keys),
		keys:     keys,
		ksPrefix: ksPrefix,
		service:  service,
		timeout:  cfg.Redis.Timeout.Duration,
		now:      time.Now,
	}
	subscribed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Count < len(patterns) {
					continue
				}
				subscribed++
				if subscribed == 1 {
					log.Info().Strs("patterns", patterns).Bool("keyspace_events", keyspace).Msg("watching the registry")
				} else {
					log.Warn().Msg("subscribed again after a reconnect: events in between were missed")
				}
			case *redis.Message:
				p.message(ctx, m)
			}
		}
	}
}

// keyspaceNotificationsOn reads notify-keyspace-events and reports whether
// Redis publishes the keyspace notifications of registry keys. A server that
// refuses CONFIG GET (renamed, ACL) just means no; a server that does not
// answer is an error.
func keyspaceNotificationsOn(ctx context.Context, client redis.UniversalClient, timeout time.Duration, log zerolog.Logger) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cur, err := client.ConfigGet(cctx, "notify-keyspace-events").Result()
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		log.Info().Err(err).Msg("cannot read notify-keyspace-events: showing registered/deregistered events only")
		return false, nil
	case err != nil:
		return false, err
	}
	flags := cur["notify-keyspace-events"]
	// K: keyspace channel; then any class of the commands the writers use
	// (g: del, expire; $: SETEX; s: SADD/SREM; x: expired; A: all).
	on := strings.Contains(flags, "K") && strings.ContainsAny(flags, "Ag$sx")
	if !on {
		log.Info().Str("notify-keyspace-events", flags).
			Msg("keyspace notifications are off: showing registered/deregistered events only (regdns serve turns them on)")
	}
	return on, nil
}

// watchPatterns are the PSUBSCRIBE patterns of watch: the event channels of
// service ("" for all) and, with keyspace, the keyspace channels of its set,
// instance and health keys.
func watchPatterns(keys registry.Keys, service, ksPrefix string, keyspace bool) []string {
	if service == "" {
		out := []string{keys.EventsPattern()}
		if keyspace {
			out = append(out, ksPrefix+keys.SetPattern(), ksPrefix+keys.HealthPattern())
		}
		return out
	}
	out := []string{globEscape(keys.Events(service))}
	if keyspace {
		out = append(out,
			ksPrefix+globEscape(keys.Set(service)),
			ksPrefix+globEscape(keys.Instance(service, ""))+"*",
			ksPrefix+globEscape(keys.Health(service, ""))+"*")
	}
	return out
}

// globEscape quotes the characters Redis glob patterns treat specially, so a
// service name like "a*" matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// eventPrinter turns pub/sub messages into watch's output lines:
//
//	TIME  SERVICE  EVENT  INSTANCE  DETAIL
//
// EVENT is registered or deregistered (the writers' events), or
// instance:<op>, health:<op>, set:<op> for keyspace notifications (op as
// Redis names it: set, expire, expired, del, sadd, srem, ...; a SETEX, which
// Redis notifies as set then expire, is one "set"). DETAIL is the
// address of a registered instance and the status of a health write, each
// read when the event arrives, and the status a health_changed event carries.
type eventPrinter struct {
	out      io.Writer
	store    *registry.Store
	keys     registry.Keys
	ksPrefix string
	service  string
	timeout  time.Duration
	now      func() time.Time
	// lastSet is the key of the previous message when it was a "set".
	lastSet string
}

func (p *eventPrinter) message(ctx context.Context, m *redis.Message) {
	if key, ok := strings.CutPrefix(m.Channel, p.ksPrefix); ok {
		kind, svc, id := p.keys.Parse(key)
		if kind == registry.KindOther || (p.service != "" && svc != p.service) {
			return
		}
		// SETEX notifies "set" and then "expire": one write, one line.
		setex := m.Payload == "expire" && key == p.lastSet
		p.lastSet = ""
		if setex {
			return
		}
		if m.Payload == "set" {
			p.lastSet = key
		}
		var event, detail string
		switch kind {
		case registry.KindSet:
			event = "set:" + m.Payload
		case registry.KindInstance:
			event = "instance:" + m.Payload
		case registry.KindHealth:
			event = "health:" + m.Payload
			if m.Payload == "set" {
				detail = p.health(ctx, svc, id)
			}
		}
		p.print(svc, event, id, detail)
		return
	}
	p.lastSet = ""
	svc, ok := p.keys.ServiceOfChannel(m.Channel)
	if !ok || (p.service != "" && svc != p.service) {
		return
	}
	var ev struct {
		Event      string `json:"event"`
		InstanceID string `json:"instance_id"`
		// Status comes with health_changed, which regdns's health checker
		// publishes next to the reference events.
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil || ev.Event == "" {
		p.print(svc, "unknown-event", "", clipText(m.Payload))
		return
	}
	detail := ev.Status
	if ev.Event == "registered" && ev.InstanceID != "" {
		detail = p.address(ctx, svc, ev.InstanceID)
	}
	p.print(svc, ev.Event, ev.InstanceID, detail)
}

func (p *eventPrinter) print(service, event, id, detail string) {
	line := fmt.Sprintf("%s  %-16s  %-18s  %s", p.now().Format("2006-01-02T15:04:05.000Z07:00"), service, event, dash(id))
	if detail != "" {
		line += "  " + detail
	}
	fmt.Fprintln(p.out, line)
}

// address reads a just-registered instance: its host:port, or why there is
// none.
func (p *eventPrinter) address(ctx context.Context, service, id string) string {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	entries, err := p.store.Entries(cctx, service, []string{id})
	switch {
	case err != nil:
		return "(" + err.Error() + ")"
	case entries[0].WrongType:
		return "(malformed: instance key is not a string)"
	case entries[0].Data == nil:
		return "(key already gone)"
	}
	in, err := registry.DecodeInstance(service, id, entries[0].Data)
	if err != nil {
		return "(malformed: " + reason(err) + ")"
	}
	return net.JoinHostPort(in.Host, strconv.Itoa(int(in.Port)))
}

// health reads the status a health write just stored.
func (p *eventPrinter) health(ctx context.Context, service, id string) string {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	data, _, err := p.store.Health(cctx, service, id)
	switch {
	case err != nil:
		return "(" + err.Error() + ")"
	case data == nil:
		return "(key already gone)"
	}
	h, err := registry.DecodeHealth(data)
	if err != nil {
		return "(malformed: " + reason(err) + ")"
	}
	return h.Status.String()
}

// clipText shortens an unexpected payload for one output line.
func clipText(s string) string {
	const limit = 80
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return strconv.Quote(s)
}
