package admin

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptions: every metric regdns exports besides the Go and
// process collectors'. README.md lists them.
var (
	descQueries = prometheus.NewDesc("regdns_dns_queries_total",
		"DNS replies sent, by query type, response code and transport.", []string{"qtype", "rcode", "transport"}, nil)
	descFastPath = prometheus.NewDesc("regdns_dns_fast_path_total",
		"DNS replies sent from the packed answer table (the rest come from the full handler).", nil, nil)
	descDuration = prometheus.NewDesc("regdns_dns_request_duration_seconds",
		"Time to answer a query: per query over TCP; over UDP the time of the batch the reply was in.", []string{"transport"}, nil)
	descForwarded = prometheus.NewDesc("regdns_dns_forwarded_total",
		"Queries for names outside the zones forwarded upstream.", nil, nil)
	descForwardErrors = prometheus.NewDesc("regdns_dns_forward_errors_total",
		"Forwarded queries no upstream answered (SERVFAIL sent).", nil, nil)
	descRRL = prometheus.NewDesc("regdns_dns_rrl_total",
		"UDP responses response rate limiting held back, by action: dropped, or slipped (sent truncated).", []string{"action"}, nil)

	descInvalidations = prometheus.NewDesc("regdns_registry_invalidations_total",
		"Service changes published to the DNS answers, by what caused them.", []string{"zone", "cause"}, nil)
	descResyncs = prometheus.NewDesc("regdns_registry_resyncs_total",
		"Full re-reads of the registry, by result.", []string{"zone", "result"}, nil)
	descRedisRequests = prometheus.NewDesc("regdns_redis_requests_total",
		"Redis commands and pipelines sent by the registry view.", []string{"zone"}, nil)
	descRedisErrors = prometheus.NewDesc("regdns_redis_errors_total",
		"Redis commands and pipelines of the view that failed (a missing key or WRONGTYPE is no failure).", []string{"zone"}, nil)
	descRedisDuration = prometheus.NewDesc("regdns_redis_request_duration_seconds",
		"Round-trip time of the view's Redis commands and pipelines.", []string{"zone"}, nil)
	descSubscribed = prometheus.NewDesc("regdns_registry_subscribed",
		"1 while the pub/sub subscription is live (its last sign is newer than the last Redis failure).", []string{"zone"}, nil)
	descUp = prometheus.NewDesc("regdns_registry_up",
		"1 while the view is in sync with Redis.", []string{"zone"}, nil)
	descStale = prometheus.NewDesc("regdns_registry_stale_seconds",
		"How long the view has been out of sync with Redis (0 in sync).", []string{"zone"}, nil)
	descSkipped = prometheus.NewDesc("regdns_registry_skipped_total",
		"Malformed registry entries skipped, once per key and reason, by reason.", []string{"zone", "reason"}, nil)
	descPanics = prometheus.NewDesc("regdns_registry_panic_total",
		"Times a service entered panic mode (too few healthy instances: every live one served).", []string{"zone"}, nil)
	descEventLag = prometheus.NewDesc("regdns_event_to_answer_seconds",
		"Time from a pub/sub message to the change it caused being in the DNS answers.", []string{"zone"}, nil)
	descServices = prometheus.NewDesc("regdns_registry_services",
		"Services in the view.", []string{"zone"}, nil)
	descInstances = prometheus.NewDesc("regdns_instances",
		"Live instances by service and health (at most MaxServices services per zone, the first by name).",
		[]string{"zone", "service", "health"}, nil)
)

// healthStatuses are the health label values of regdns_instances, each
// exported for every service so a status at 0 is a series at 0.
var healthStatuses = []string{"healthy", "unhealthy", "unknown", "draining"}

// collector reads the counters at scrape time and exports them as
// constant metrics: the hot paths keep plain atomics.
type collector struct {
	dns         DNS
	zones       []Zone
	maxServices int
}

// collector implements prometheus.Collector.
var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descQueries, descFastPath, descDuration, descForwarded, descForwardErrors, descRRL,
		descInvalidations, descResyncs, descRedisRequests, descRedisErrors, descRedisDuration,
		descSubscribed, descUp, descStale, descSkipped, descPanics, descEventLag, descServices, descInstances,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.dns != nil {
		c.collectDNS(ch, c.dns.DNSStats())
	}
	for _, z := range c.zones {
		c.collectZone(ch, z)
	}
}

func (c *collector) collectDNS(ch chan<- prometheus.Metric, s DNSStats) {
	// Fast and full replies of one kind are one series.
	type key struct{ qtype, rcode, transport string }
	sums := map[key]uint64{}
	var keys []key
	for _, q := range s.Queries {
		k := key{q.Qtype, q.Rcode, q.Transport}
		if _, ok := sums[k]; !ok {
			keys = append(keys, k)
		}
		sums[k] += q.N
	}
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(sums[k]), k.qtype, k.rcode, k.transport)
	}
	ch <- prometheus.MustNewConstMetric(descFastPath, prometheus.CounterValue, float64(s.FastPath))
	for _, t := range sortedKeys(s.Latency) {
		ch <- histogram(descDuration, s.Latency[t], t)
	}
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(s.Forwarded))
	ch <- prometheus.MustNewConstMetric(descForwardErrors, prometheus.CounterValue, float64(s.ForwardErrors))
	ch <- prometheus.MustNewConstMetric(descRRL, prometheus.CounterValue, float64(s.RRLDropped), "dropped")
	ch <- prometheus.MustNewConstMetric(descRRL, prometheus.CounterValue, float64(s.RRLSlipped), "slipped")
}

func (c *collector) collectZone(ch chan<- prometheus.Metric, z Zone) {
	name, s := z.Name(), z.RegistryStats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{name}, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{name}, labels...)...)
	}
	for _, cause := range sortedKeys(s.Invalidations) {
		counter(descInvalidations, s.Invalidations[cause], cause)
	}
	counter(descResyncs, s.Resyncs, "ok")
	counter(descResyncs, s.ResyncFailures, "failed")
	counter(descRedisRequests, s.RedisCalls)
	counter(descRedisErrors, s.RedisErrors)
	ch <- histogram(descRedisDuration, s.RedisLatency, name)
	gauge(descSubscribed, boolValue(s.Subscribed))
	gauge(descUp, boolValue(s.Synced))
	gauge(descStale, s.StaleFor.Seconds())
	for _, reason := range sortedKeys(s.Skipped) {
		counter(descSkipped, s.Skipped[reason], reason)
	}
	counter(descPanics, s.Panics)
	ch <- histogram(descEventLag, s.EventLag, name)
	gauge(descServices, float64(s.Services))
	services := z.Services()
	for _, svc := range services[:min(len(services), c.maxServices)] {
		counts := z.InstanceHealth(svc)
		for _, h := range healthStatuses {
			gauge(descInstances, float64(counts[h]), svc, h)
		}
	}
}

// histogram turns a snapshot into a constant Prometheus histogram, whose
// buckets are cumulative.
func histogram(d *prometheus.Desc, h Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var total uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			total += h.Counts[i]
		}
		buckets[b] = total
	}
	if len(h.Counts) > len(h.Bounds) {
		total += h.Counts[len(h.Bounds)]
	}
	return prometheus.MustNewConstHistogram(d, total, h.Sum, buckets, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
