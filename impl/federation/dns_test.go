package federation_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a DNS server on loopback UDP that answers SRV queries from
// its records and every other question with NXDOMAIN.
type dnsServer struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string][]dnsmessage.SRVResource // by lower-case FQDN
	asked   []string
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{conn: conn, records: map[string][]dnsmessage.SRVResource{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if out, ok := d.answer(buf[:n]); ok {
				_, _ = conn.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return d
}

// srv publishes an SRV record for name (e.g. "_matrix-fed._tcp.example.com").
func (d *dnsServer) srv(name, target string, port uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := strings.ToLower(name) + "."
	if target != "." {
		target += "."
	}
	d.records[key] = append(d.records[key], dnsmessage.SRVResource{Priority: 10, Weight: 1, Port: port, Target: dnsmessage.MustNewName(target)})
}

func (d *dnsServer) questions() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

func (d *dnsServer) answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	d.asked = append(d.asked, name)
	recs := d.records[name]
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if q.Type != dnsmessage.TypeSRV || len(recs) == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, false
	}
	if err := b.Question(q); err != nil {
		return nil, false
	}
	if err := b.StartAnswers(); err != nil {
		return nil, false
	}
	if q.Type == dnsmessage.TypeSRV {
		for _, r := range recs {
			if err := b.SRVResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, r); err != nil {
				return nil, false
			}
		}
	}
	out, err := b.Finish()
	return out, err == nil
}

// lookupSRV is a real DNS lookup (Go's resolver) against d.
func (d *dnsServer) lookupSRV() func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
	return r.LookupSRV
}
