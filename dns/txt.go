package dns

import (
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/registry"
)

// metaTXT is an instance's metadata as "key=value" strings (RFC 1464, RFC
// 6763 6): sorted by key, '=' '`' and outer spaces in keys quoted with '`',
// strings longer than 255 octets split, and the whole bounded by MaxTXT.
// DNS-SD requires a TXT record even without metadata (one empty string);
// elsewhere no metadata is no data.
func (h *Handler) metaTXT(owner string, ttl uint32, in *registry.Instance, dnssd bool) []dns.RR {
	var strs []string
	size := 0
	for _, e := range in.Meta { // sorted by key
		kv := quoteKey(e.Key) + "=" + e.Value
		if size+len(kv) > h.opts.Load().MaxTXT {
			break // bounded: the rest is left out
		}
		size += len(kv)
		strs = append(strs, split255(kv)...)
	}
	if len(strs) == 0 {
		if !dnssd {
			return nil
		}
		strs = []string{""}
	}
	return []dns.RR{&dns.TXT{Hdr: hdr(owner, dns.TypeTXT, ttl), Txt: escapeTXT(strs)}}
}

// quoteKey quotes the characters RFC 1464 reserves in an attribute name.
func quoteKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '=' || c == '`' || (c == ' ' && (i == 0 || i == len(k)-1)) {
			b.WriteByte('`')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// split255 cuts s into character-strings of at most 255 octets.
func split255(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// escapeTXT writes strings the way miekg/dns expects TXT data: in
// presentation form, where '"' and '\' are escaped.
func escapeTXT(strs []string) []string {
	out := make([]string, len(strs))
	for i, s := range strs {
		out[i] = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
	}
	return out
}

// explain answers _explain.<service>.<zone> TXT: one string per live
// instance, saying why it is or is not served.
func (h *Handler) explain(q *query, s *service) (answer, error) {
	if q.Qtype != dns.TypeTXT {
		return answer{}, errNoData
	}
	serving := make(map[string]bool, len(s.serving))
	for _, in := range s.serving {
		serving[in.ID] = true
	}
	var strs []string
	for _, in := range s.snap.Instances {
		age := "unknown"
		if !in.LastHeartbeat.IsZero() {
			age = q.now.Sub(in.LastHeartbeat).Round(time.Second).String()
		}
		strs = append(strs, split255(fmt.Sprintf("id=%s addr=%s:%d health=%s heartbeat_age=%s weight=%d %s",
			in.ID, in.Host, in.Port, in.Health.Status, age, in.Weight, h.why(s, in, serving[in.ID])))...)
	}
	if len(strs) == 0 {
		strs = []string{"no live instance"}
	}
	// No caching and no packing: it explains the present.
	return answer{answer: []dns.RR{&dns.TXT{Hdr: hdr(q.Name, dns.TypeTXT, 0), Txt: escapeTXT(strs)}}, perClient: true}, nil
}

func (h *Handler) why(s *service, in *registry.Instance, served bool) string {
	switch {
	case !validLabel(in.ID):
		// The catalog skips it, so it is never among the served.
		return "served=no reason=instance id is not a DNS label"
	case served && in.Draining():
		return "served=yes reason=draining: in SRV with weight 0, not in A/AAAA"
	case served && s.snap.Panic:
		return "served=yes reason=panic mode: too few healthy instances, every live one served"
	case served:
		return "served=yes reason=health " + in.Health.Status.String() + " is served in this health mode"
	case in.Health.Status == registry.StatusUnhealthy:
		return "served=no reason=unhealthy"
	default:
		return "served=no reason=health " + in.Health.Status.String() + " is not served in this health mode"
	}
}
