package dns

import (
	"net"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Handler implements dns.Handler.
var _ dns.Handler = (*Handler)(nil)

// ServeDNS answers one query: EDNS checks, Answer, then truncation to what
// the transport carries. A panic becomes SERVFAIL instead of a dead server.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			h.log().Error().Interface("panic", p).Msg("query handler panicked")
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
		}
	}()
	m := h.reply(r, isTCP(w.LocalAddr()))
	_ = w.WriteMsg(m) // a client gone away is not our error
}

// reply is ServeDNS without the socket: the answer, with OPT for EDNS
// queries, cut to fit the transport. Over UDP the limit is 512 octets
// without EDNS, else the client's advertised size capped by MaxUDPSize;
// TC is set when records were left out, so the client retries over TCP
// (RFC 1035 4.2.1, RFC 6891 6.2.5). Over TCP it is 65535 octets.
func (h *Handler) reply(r *dns.Msg, tcp bool) *dns.Msg {
	opt := r.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: BADVERS, with an OPT carrying our version 0.
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeBadVers)
		m.SetEdns0(h.opts.MaxUDPSize, false)
		return m
	}
	m := h.Answer(r)
	size := dns.MinMsgSize
	if opt != nil {
		size = int(max(min(opt.UDPSize(), h.opts.MaxUDPSize), dns.MinMsgSize))
		m.SetEdns0(h.opts.MaxUDPSize, opt.Do())
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	return m
}

func isTCP(a net.Addr) bool {
	_, ok := a.(*net.TCPAddr)
	return ok
}

// log is a hook for the logger; the handler itself logs only panics.
func (h *Handler) log() *zerolog.Logger { return &h.cat.log }
