package dns

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
)

// limitListener accepts at most max connections at once. When all are in
// use, a new connection takes the slot of the oldest connection that has
// not been answered yet (a slowloris trickling a query, or a half-open
// connection that sends nothing), which is closed; if every connection has
// been answered, the new one is closed at once rather than left waiting in
// the backlog. So a flood of connections costs the server nothing, a
// client learns quickly to try elsewhere, and connections that never send
// a query cannot keep real clients out (RFC 7766 6.2.2 and 6.2.3 let
// servers close connections under load, idle ones first).
type limitListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open int
	// unanswered holds the open connections that have written nothing
	// yet, oldest first.
	unanswered list.List
}

func newLimitListener(l net.Listener, max int) net.Listener {
	return &limitListener{Listener: l, max: max}
}

// Accept implements net.Listener.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim *limitedConn
		if l.open >= l.max {
			if e := l.unanswered.Front(); e != nil {
				victim = l.unanswered.Remove(e).(*limitedConn)
				victim.elem = nil
				victim.released.Store(true) // its slot passes to c
				l.open--
			}
		}
		if l.open >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		lc := &limitedConn{Conn: c, l: l}
		lc.elem = l.unanswered.PushBack(lc)
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close() // its own Close, later, finds the slot given away
		}
		return lc, nil
	}
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	l *limitListener
	// elem is its place in l.unanswered (nil once it has written, or been
	// evicted); guarded by l.mu.
	elem *list.Element
	// answered is set by the first Write; released once the slot is given
	// back or away (changed under l.mu).
	answered, released atomic.Bool
}

// Write implements net.Conn; the first write takes the connection off the
// list of those that may be closed for a newcomer.
func (c *limitedConn) Write(b []byte) (int, error) {
	if !c.answered.Swap(true) {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.unanswered.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
	}
	return c.Conn.Write(b)
}

// Close implements net.Conn.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.unanswered.Remove(c.elem)
		c.elem = nil
	}
	if !c.released.Swap(true) {
		c.l.open--
	}
	c.l.mu.Unlock()
	return err
}
