// Package route maps recipients to spaces and writes what the policy
// decided into Redis: requests and comments onto each space's stream (one
// server-side script per message, in the space's hash slot), held requests,
// and the decision log. It owns the space keys of DESIGN §4.
package route

import (
	"fmt"

	"mailgw/config"
	"mailgw/identify/mailaddr"
)

// Router finds the space of a recipient address.
type Router struct {
	byAddr map[string]config.Space
}

// NewRouter indexes the support addresses of spaces.
func NewRouter(spaces []config.Space) (*Router, error) {
	r := &Router{byAddr: map[string]config.Space{}}
	for _, s := range spaces {
		for _, a := range s.Addresses {
			na, err := mailaddr.Normalize(a)
			if err != nil {
				return nil, fmt.Errorf("route: space %s: %w", s.Key, err)
			}
			r.byAddr[mailaddr.WithoutTag(na)] = s
		}
	}
	return r, nil
}

// Route returns the space a recipient belongs to; "local+tag@domain" routes
// like "local@domain".
func (r *Router) Route(rcpt string) (config.Space, bool) {
	na, err := mailaddr.Normalize(rcpt)
	if err != nil {
		return config.Space{}, false
	}
	s, ok := r.byAddr[mailaddr.WithoutTag(na)]
	return s, ok
}

// IsSupportAddress reports whether a normalized address is one of the
// gateway's own support addresses, tags ignored.
func (r *Router) IsSupportAddress(addr string) bool {
	_, ok := r.byAddr[mailaddr.WithoutTag(addr)]
	return ok
}
