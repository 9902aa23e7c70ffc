// Command seed fills a Redis with a benchmark registry in the reference
// layout, and writes the same records as a zone file and a dnsperf query
// file, so that regdns, bench/ceiling and Knot DNS serve identical answers.
//
//	seed -redis redis://127.0.0.1:6379/0 -services 100 -instances 3 \
//	     -zonefile out/service.local.zone -queries out/queries.txt
//
// Service i is svc-<i>; its instance j has a UUID-shaped id (36 characters,
// like the reference writer's uuid4), address 10.<i/256>.<i%256>.<j%250+1>
// and port 8000+j. Each instance gets what the reference ServiceRegistry
// and HealthChecker write: the instance document (SETEX), the set member
// (SADD) and a healthy health document (SETEX). Writes go in pipelines of
// 1,000 instances. TTLs are long (-ttl, default 1h) so nothing expires
// during a benchmark; no events are published (regdns reads everything at
// start).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/regdns/regdns/registry"
)

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	services := flag.Int("services", 100, "number of services")
	instances := flag.Int("instances", 3, "instances per service")
	zone := flag.String("zone", "service.local.", "zone of the zone file")
	ttl := flag.Duration("ttl", time.Hour, "TTL of instance and health keys")
	flush := flag.Bool("flush", false, "FLUSHDB before writing")
	zoneFile := flag.String("zonefile", "", "write the records as a zone file here")
	queries := flag.String("queries", "", "write a dnsperf query file here: SRV and A of the first -query-services services")
	queryServices := flag.Int("query-services", 100, "services in the query file")
	flag.Parse()
	if err := run(*url, *services, *instances, dnsName(*zone), *ttl, *flush, *zoneFile, *queries, *queryServices); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func dnsName(s string) string { return strings.TrimSuffix(s, ".") + "." }

// layout of the benchmark registry: the one place it is defined.
func serviceName(i int) string { return fmt.Sprintf("svc-%d", i) }
func instanceID(i, j int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, j)
}
func address(i, j int) string { return fmt.Sprintf("10.%d.%d.%d", i/256%256, i%256, j%250+1) }
func port(j int) int          { return 8000 + j }

func run(url string, services, instances int, zone string, ttl time.Duration, flush bool, zoneFile, queries string, queryServices int) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opts.DisableIdentity = true // quiet against redis 7.0
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	if flush {
		if err := c.FlushDB(ctx).Err(); err != nil {
			return err
		}
	}
	start := time.Now()
	keys := registry.DefaultKeys()
	now := float64(time.Now().UnixNano()) / 1e9
	health := fmt.Sprintf(`{"status": "healthy", "checked_at": %.6f}`, now)
	p := c.Pipeline()
	queued := 0
	for i := range services {
		name := serviceName(i)
		for j := range instances {
			id := instanceID(i, j)
			doc, err := json.Marshal(struct {
				ServiceName   string            `json:"service_name"`
				InstanceID    string            `json:"instance_id"`
				Host          string            `json:"host"`
				Port          int               `json:"port"`
				Metadata      map[string]string `json:"metadata"`
				RegisteredAt  float64           `json:"registered_at"`
				LastHeartbeat float64           `json:"last_heartbeat"`
			}{name, id, address(i, j), port(j), map[string]string{"version": "1.0.0", "region": "us-east-1"}, now, now})
			if err != nil {
				return err
			}
			p.SetEx(ctx, keys.Instance(name, id), doc, ttl)
			p.SAdd(ctx, keys.Set(name), id)
			p.SetEx(ctx, keys.Health(name, id), health, ttl)
			if queued++; queued == 1000 {
				if _, err := p.Exec(ctx); err != nil {
					return err
				}
				queued = 0
			}
		}
	}
	if queued > 0 {
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "seed: %d services x %d instances (%d) written in %.2fs\n",
		services, instances, services*instances, time.Since(start).Seconds())
	if zoneFile != "" {
		if err := writeZone(zoneFile, zone, services, instances); err != nil {
			return err
		}
	}
	if queries != "" {
		if err := writeQueries(queries, zone, min(services, queryServices)); err != nil {
			return err
		}
	}
	return nil
}

// writeZone writes what regdns answers for the registry: per service an
// SRV per instance (priority 1, weight 1, target <id>.<service>.<zone>),
// the service's A records and each instance's A, TTL 5, plus the apex.
func writeZone(path, zone string, services, instances int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "$ORIGIN %s\n$TTL 5\n", zone)
	fmt.Fprintf(w, "@ IN SOA ns.%s hostmaster.%s 1 3600 600 86400 5\n@ IN NS ns.%s\nns IN A 127.0.0.1\n", zone, zone, zone)
	for i := range services {
		name := serviceName(i)
		for j := range instances {
			fmt.Fprintf(w, "%s IN SRV 1 1 %d %s.%s.%s\n", name, port(j), instanceID(i, j), name, zone)
		}
		for j := range instances {
			fmt.Fprintf(w, "%s IN A %s\n", name, address(i, j))
		}
		for j := range instances {
			fmt.Fprintf(w, "%s.%s IN A %s\n", instanceID(i, j), name, address(i, j))
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeQueries writes a dnsperf query file alternating SRV and A queries of
// the first n services.
func writeQueries(path, zone string, n int) error {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s.%s SRV\n%s.%s A\n", serviceName(i), zone, serviceName(i), zone)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
