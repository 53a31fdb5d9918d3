package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedFor bounds how much of X-Forwarded-For is read.
const maxForwardedFor = 2048

// ParseTrustedProxies parses a list of CIDR prefixes or single addresses
// (the --trusted-proxies flag): the proxies whose X-Forwarded-For spotoken
// believes.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		for f := range strings.SplitSeq(s, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if p, err := netip.ParsePrefix(f); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, &parseError{what: "trusted proxy", value: f, want: "a CIDR prefix (10.0.0.0/8) or an address"}
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out, nil
}

type parseError struct{ what, value, want string }

func (e *parseError) Error() string {
	return e.what + " " + truncate(e.value, 64) + " is not " + e.want
}

// ClientIP returns the address of the client that sent r: the peer's, unless
// the peer is one of trusted, in which case X-Forwarded-For is read from
// right to left and the first address not in trusted is the client (the
// right-most entries were appended by the trusted proxies themselves;
// anything left of the first untrusted one could be forged by the client).
// Without trusted proxies X-Forwarded-For is ignored. It returns the zero
// Addr when the peer's address cannot be read.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() || !contains(trusted, peer) {
		return peer
	}
	values := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		if len(v) > maxForwardedFor {
			return client
		}
		for rest := v; rest != ""; {
			j := strings.LastIndexByte(rest, ',')
			part := strings.TrimSpace(rest[j+1:])
			rest = rest[:max(j, 0)]
			a, ok := forwardedAddr(part)
			if !ok {
				return client // garbage: trust nothing further left
			}
			client = a
			if !contains(trusted, a) {
				return a
			}
		}
	}
	return client
}

// forwardedAddr parses one X-Forwarded-For element: an address, perhaps
// with a port or in brackets.
func forwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
