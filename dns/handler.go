package dns

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Handler implements dns.Handler.
var _ dns.Handler = (*Handler)(nil)

// ServeDNS answers one query: zone transfers for allowed clients over TCP,
// otherwise reply. A panic becomes SERVFAIL instead of a dead server.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start, rcode, fast := time.Now(), -1, false // counted in served (stats.go)
	defer func() {
		if p := recover(); p != nil {
			h.log().Error().Interface("panic", p).Msg("query handler panicked")
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
			rcode = dns.RcodeServerFailure
		}
		h.served(w, r, rcode, fast, start)
	}()
	tcp := isTCP(w.LocalAddr())
	client := addrOf(w.RemoteAddr())
	if isTransfer(r) && tcp && h.transferAllowed(client) {
		if err := h.transfer(w, r); err != nil {
			h.log().Debug().Err(err).Str("client", client.String()).Msg("zone transfer aborted")
		}
		rcode = dns.RcodeSuccess
		return
	}
	if tcp {
		if rcode, fast = h.writePacked(w, r); fast {
			return
		}
	}
	m := h.reply(r, tcp, client)
	rcode = m.Rcode
	_ = w.WriteMsg(m) // a client gone away is not our error
	if tcp {
		h.learn(r, m) // so the next such query is answered from the packed table
	}
}

func isTransfer(r *dns.Msg) bool {
	return r.Opcode == dns.OpcodeQuery && len(r.Question) == 1 &&
		(r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR)
}

// reply is ServeDNS without the socket: the answer (or the forwarded one),
// with OPT for EDNS queries, cut to fit the transport. Over UDP the limit is
// 512 octets without EDNS, else the client's advertised size capped by
// MaxUDPSize; TC is set when records were left out, so the client retries
// over TCP (RFC 1035 4.2.1, RFC 6891 6.2.5). Over TCP it is 65535 octets.
func (h *Handler) reply(r *dns.Msg, tcp bool, client netip.Addr) *dns.Msg {
	opt := r.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: BADVERS, with an OPT carrying our version 0.
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeBadVers)
		m.SetEdns0(h.opts.Load().MaxUDPSize, false)
		return m
	}
	if opt != nil && slices.IndexFunc(r.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT && rr != opt }) >= 0 {
		// RFC 6891 6.1.1: more than one OPT is FORMERR.
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		m.SetEdns0(h.opts.Load().MaxUDPSize, false)
		return m
	}
	m, perClient := h.forward(r, client), false
	if m == nil {
		var a answer
		m, a = h.answer(r, live, h.clientOf(r, client))
		perClient = a.perClient
	}
	size := dns.MinMsgSize
	if opt != nil {
		size = int(max(min(opt.UDPSize(), h.opts.Load().MaxUDPSize), dns.MinMsgSize))
		m.SetEdns0(h.opts.Load().MaxUDPSize, opt.Do())
		echoSubnet(opt, m.IsEdns0(), perClient)
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	m.Compress = true // Truncate turns compression off when the reply fits without it
	return m
}

// forward answers names outside the zones through the Forwarder, for the
// clients it allows; nil means "answer it ourselves" (REFUSED, mostly).
func (h *Handler) forward(r *dns.Msg, client netip.Addr) *dns.Msg {
	f := h.opts.Load().Forwarder
	if f == nil || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 ||
		h.inZones(r.Question[0].Name) || !f.Allowed(client) || isTransfer(r) {
		return nil
	}
	m, err := f.Forward(r)
	h.stats.forwarded.Add(1)
	if err != nil {
		h.stats.forwardErrors.Add(1)
		h.log().Debug().Err(err).Msg("forwarding failed")
		m = new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
	}
	return m
}

// echoSubnet copies an EDNS Client Subnet option into the reply (RFC 7871
// 7.2.1) with scope 0 when the answer does not depend on the client, and
// the source prefix length when it does (locality, sticky order).
func echoSubnet(q, reply *dns.OPT, perClient bool) {
	for _, o := range q.Option {
		if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
			c := *ecs
			c.SourceScope = 0
			if perClient {
				c.SourceScope = c.SourceNetmask
			}
			reply.Option = append(reply.Option, &c)
			return
		}
	}
}

func isTCP(a net.Addr) bool {
	_, ok := a.(*net.TCPAddr)
	return ok
}

// addrOf is the IP of a client address.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// log is the logger; the handler itself logs only panics and debug detail.
func (h *Handler) log() *zerolog.Logger { return &h.cat.log }
