package identify

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/config"
	"mailgw/identify/mailaddr"
)

// Account types and statuses as stored in customer hashes and stream entries.
const (
	TypeAgent    = "agent"
	TypeInternal = "internal"
	TypePortal   = "portal"

	StatusActive   = "active"
	StatusPending  = "pending"
	StatusDisabled = "disabled"
)

// Customer is a customer account.
type Customer struct {
	Email     string `json:"email"`
	Name      string `json:"name,omitempty"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Source    string `json:"source,omitempty"` // config, cli, smtp, imap, replay, web
	CreatedAt string `json:"created_at,omitempty"`
}

// ErrNotFound is returned for customers and organizations that do not exist.
var ErrNotFound = errors.New("identify: not found")

// Directory is the customer directory in Redis: customers, organizations,
// space membership and agents. Config seeds it; the CLI edits it.
type Directory struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

// NewDirectory returns a directory under prefix. Each Redis call gets its
// own timeout so that a stalled server cannot hold a session forever.
func NewDirectory(rdb redis.UniversalClient, prefix string, timeout time.Duration) *Directory {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Directory{rdb: rdb, prefix: prefix, timeout: timeout, now: time.Now}
}

func (d *Directory) customerKey(addr string) string   { return d.prefix + "customer:" + addr }
func (d *Directory) customersKey() string             { return d.prefix + "customers" }
func (d *Directory) orgKey(name string) string        { return d.prefix + "org:" + name }
func (d *Directory) orgMembersKey(name string) string { return d.prefix + "org:" + name + ":members" }
func (d *Directory) orgDomainsKey(name string) string { return d.prefix + "org:" + name + ":domains" }
func (d *Directory) orgsKey() string                  { return d.prefix + "orgs" }
func (d *Directory) agentsKey() string                { return d.prefix + "agents" }
func (d *Directory) spaceCustomersKey(space string) string {
	return d.prefix + "space:" + space + ":customers"
}
func (d *Directory) spaceOrgsKey(space string) string { return d.prefix + "space:" + space + ":orgs" }
func (d *Directory) spacesKey() string                { return d.prefix + "spaces" }

func (d *Directory) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d.timeout)
}

// Lookup returns what the policy needs to know of addr as a sender to space,
// in one round trip, or two when organizations are linked to the space.
func (d *Directory) Lookup(ctx context.Context, addr, space string) (Sender, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	pipe := d.rdb.Pipeline()
	read := d.QueueLookup(ctx, pipe, addr, space, true)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Sender{Address: addr}, fmt.Errorf("identify: look up %s: %w", addr, err)
	}
	return read(ctx)
}

// QueueLookup adds Lookup's first round trip to pipe, so that callers can
// share it with other look-ups; after pipe ran, the returned function reads
// the answer, asking Redis once more about linked organizations if any.
// membership says whether to find out SpaceCustomer and LinkedOrgDomain:
// the policy asks them of restricted spaces only, so the look-up for an
// open space skips them (two commands fewer per message).
func (d *Directory) QueueLookup(ctx context.Context, pipe redis.Pipeliner, addr, space string, membership bool) func(context.Context) (Sender, error) {
	cust := pipe.HGetAll(ctx, d.customerKey(addr))
	agent := pipe.SIsMember(ctx, d.agentsKey(), addr)
	cmds := []redis.Cmder{cust, agent}
	var listed *redis.BoolCmd
	var orgs *redis.StringSliceCmd
	if membership {
		listed = pipe.SIsMember(ctx, d.spaceCustomersKey(space), addr)
		orgs = pipe.SMembers(ctx, d.spaceOrgsKey(space))
		cmds = append(cmds, listed, orgs)
	}
	return func(ctx context.Context) (Sender, error) {
		s := Sender{Address: addr}
		for _, c := range cmds {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return s, fmt.Errorf("identify: look up %s: %w", addr, err)
			}
		}
		if m := cust.Val(); len(m) > 0 {
			c := customerFromHash(m)
			s.Customer = &c
		}
		s.Agent = agent.Val()
		if !membership {
			return s, nil
		}
		s.SpaceCustomer = listed.Val()
		linked := orgs.Val()
		if len(linked) == 0 {
			return s, nil
		}
		sort.Strings(linked)
		ctx, cancel := d.ctx(ctx)
		defer cancel()
		domain := mailaddr.Domain(addr)
		pipe := d.rdb.Pipeline()
		members := make([]*redis.BoolCmd, len(linked))
		domains := make([]*redis.BoolCmd, len(linked))
		for i, o := range linked {
			members[i] = pipe.SIsMember(ctx, d.orgMembersKey(o), addr)
			domains[i] = pipe.SIsMember(ctx, d.orgDomainsKey(o), domain)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return s, fmt.Errorf("identify: look up organizations of %s: %w", addr, err)
		}
		for i := range linked {
			s.SpaceCustomer = s.SpaceCustomer || members[i].Val()
			s.LinkedOrgDomain = s.LinkedOrgDomain || domains[i].Val()
		}
		return s, nil
	}
}

func customerFromHash(m map[string]string) Customer {
	return Customer{
		Email:     m["email"],
		Name:      m["name"],
		Type:      m["type"],
		Status:    m["status"],
		Source:    m["source"],
		CreatedAt: m["created_at"],
	}
}

// createCustomer creates the account only if it does not exist, so that a
// restart re-seeding config or a provisioning race never overwrites a status
// an operator set (a disabled account stays disabled). It touches one key:
// directory keys live in different Redis Cluster slots.
var createCustomer = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'email', ARGV[1], 'name', ARGV[2], 'type', ARGV[3], 'status', ARGV[4], 'source', ARGV[5], 'created_at', ARGV[6])
return 1
`)

// CreateCustomer adds c unless an account for its address exists; it
// reports whether it created one. c.Email must be normalized.
func (d *Directory) CreateCustomer(ctx context.Context, c Customer) (bool, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	if c.CreatedAt == "" {
		c.CreatedAt = d.now().UTC().Format(time.RFC3339)
	}
	n, err := createCustomer.Run(ctx, d.rdb, []string{d.customerKey(c.Email)},
		c.Email, c.Name, c.Type, c.Status, c.Source, c.CreatedAt).Int()
	if err != nil {
		return false, fmt.Errorf("identify: create customer %s: %w", c.Email, err)
	}
	// Indexed whether or not it was created, so that a crash between the
	// two writes is repaired by the next attempt.
	if err := d.rdb.SAdd(ctx, d.customersKey(), c.Email).Err(); err != nil {
		return false, fmt.Errorf("identify: create customer %s: %w", c.Email, err)
	}
	return n == 1, nil
}

// Provision creates an account for a new sender and joins it to every
// organization that has the sender's domain.
func (d *Directory) Provision(ctx context.Context, c Customer) (bool, error) {
	created, err := d.CreateCustomer(ctx, c)
	if err != nil || !created {
		return created, err
	}
	orgs, err := d.OrgsForDomain(ctx, mailaddr.Domain(c.Email))
	if err != nil {
		return true, err
	}
	for _, o := range orgs {
		if err := d.AddOrgMember(ctx, o, c.Email); err != nil {
			return true, err
		}
	}
	return true, nil
}

// Customer returns one account.
func (d *Directory) Customer(ctx context.Context, addr string) (Customer, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	m, err := d.rdb.HGetAll(ctx, d.customerKey(addr)).Result()
	if err != nil {
		return Customer{}, fmt.Errorf("identify: customer %s: %w", addr, err)
	}
	if len(m) == 0 {
		return Customer{}, fmt.Errorf("identify: customer %s: %w", addr, ErrNotFound)
	}
	return customerFromHash(m), nil
}

// Customers lists every account, sorted by address.
func (d *Directory) Customers(ctx context.Context) ([]Customer, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	addrs, err := d.rdb.SMembers(ctx, d.customersKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("identify: list customers: %w", err)
	}
	sort.Strings(addrs)
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(addrs))
	for i, a := range addrs {
		cmds[i] = pipe.HGetAll(ctx, d.customerKey(a))
	}
	if len(addrs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("identify: list customers: %w", err)
		}
	}
	out := make([]Customer, 0, len(addrs))
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out = append(out, customerFromHash(m))
		}
	}
	return out, nil
}

// SetStatus changes the status of an existing account.
func (d *Directory) SetStatus(ctx context.Context, addr, status string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	n, err := d.rdb.Exists(ctx, d.customerKey(addr)).Result()
	if err != nil {
		return fmt.Errorf("identify: set status of %s: %w", addr, err)
	}
	if n == 0 {
		return fmt.Errorf("identify: customer %s: %w", addr, ErrNotFound)
	}
	if err := d.rdb.HSet(ctx, d.customerKey(addr), "status", status).Err(); err != nil {
		return fmt.Errorf("identify: set status of %s: %w", addr, err)
	}
	return nil
}

// RemoveCustomer deletes an account and its memberships. The keys lie in
// different Cluster slots, so this is not atomic: memberships go first, and
// a failed removal can simply be run again.
func (d *Directory) RemoveCustomer(ctx context.Context, addr string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	orgs, err := d.rdb.SMembers(ctx, d.orgsKey()).Result()
	if err != nil {
		return fmt.Errorf("identify: remove %s: %w", addr, err)
	}
	spaces, err := d.rdb.SMembers(ctx, d.spacesKey()).Result()
	if err != nil {
		return fmt.Errorf("identify: remove %s: %w", addr, err)
	}
	pipe := d.rdb.Pipeline()
	for _, o := range orgs {
		pipe.SRem(ctx, d.orgMembersKey(o), addr)
	}
	for _, s := range spaces {
		pipe.SRem(ctx, d.spaceCustomersKey(s), addr)
	}
	pipe.SRem(ctx, d.customersKey(), addr)
	del := pipe.Del(ctx, d.customerKey(addr))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("identify: remove %s: %w", addr, err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("identify: customer %s: %w", addr, ErrNotFound)
	}
	return nil
}

// Organization is an organization with its members and domains.
type Organization struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Members []string `json:"members"`
	Spaces  []string `json:"spaces,omitempty"`
}

// AddOrg creates an organization (adding an existing one is not an error).
func (d *Directory) AddOrg(ctx context.Context, name string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	pipe := d.rdb.Pipeline()
	pipe.HSetNX(ctx, d.orgKey(name), "name", name)
	pipe.HSetNX(ctx, d.orgKey(name), "created_at", d.now().UTC().Format(time.RFC3339))
	pipe.SAdd(ctx, d.orgsKey(), name)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("identify: add organization %s: %w", name, err)
	}
	return nil
}

func (d *Directory) requireOrg(ctx context.Context, name string) error {
	ok, err := d.rdb.SIsMember(ctx, d.orgsKey(), name).Result()
	if err != nil {
		return fmt.Errorf("identify: organization %s: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("identify: organization %s: %w", name, ErrNotFound)
	}
	return nil
}

// AddOrgMember adds a normalized address to an existing organization.
func (d *Directory) AddOrgMember(ctx context.Context, org, addr string) error {
	return d.addToOrg(ctx, org, d.orgMembersKey(org), addr)
}

// AddOrgDomain adds a normalized domain to an existing organization.
func (d *Directory) AddOrgDomain(ctx context.Context, org, domain string) error {
	return d.addToOrg(ctx, org, d.orgDomainsKey(org), domain)
}

func (d *Directory) addToOrg(ctx context.Context, org, key, member string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	if err := d.requireOrg(ctx, org); err != nil {
		return err
	}
	if err := d.rdb.SAdd(ctx, key, member).Err(); err != nil {
		return fmt.Errorf("identify: add %s to organization %s: %w", member, org, err)
	}
	return nil
}

// LinkOrg gives an organization's members access to a space.
func (d *Directory) LinkOrg(ctx context.Context, space, org string) error {
	return d.addToOrg(ctx, org, d.spaceOrgsKey(space), org)
}

// AddSpaceCustomer lists a customer directly in a space.
func (d *Directory) AddSpaceCustomer(ctx context.Context, space, addr string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	pipe := d.rdb.Pipeline()
	pipe.SAdd(ctx, d.spaceCustomersKey(space), addr)
	pipe.SAdd(ctx, d.spacesKey(), space)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("identify: add %s to space %s: %w", addr, space, err)
	}
	return nil
}

// AddAgent lists an agent.
func (d *Directory) AddAgent(ctx context.Context, addr string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	if err := d.rdb.SAdd(ctx, d.agentsKey(), addr).Err(); err != nil {
		return fmt.Errorf("identify: add agent %s: %w", addr, err)
	}
	return nil
}

// OrgsForDomain returns the organizations that have domain, sorted.
func (d *Directory) OrgsForDomain(ctx context.Context, domain string) ([]string, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	orgs, err := d.rdb.SMembers(ctx, d.orgsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("identify: organizations of %s: %w", domain, err)
	}
	sort.Strings(orgs)
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(orgs))
	for i, o := range orgs {
		cmds[i] = pipe.SIsMember(ctx, d.orgDomainsKey(o), domain)
	}
	if len(orgs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("identify: organizations of %s: %w", domain, err)
		}
	}
	var out []string
	for i, c := range cmds {
		if c.Val() {
			out = append(out, orgs[i])
		}
	}
	return out, nil
}

// Orgs lists every organization with its members, domains and linked spaces.
func (d *Directory) Orgs(ctx context.Context, spaces []string) ([]Organization, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	names, err := d.rdb.SMembers(ctx, d.orgsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("identify: list organizations: %w", err)
	}
	sort.Strings(names)
	out := make([]Organization, 0, len(names))
	for _, n := range names {
		o := Organization{Name: n}
		if o.Members, err = d.rdb.SMembers(ctx, d.orgMembersKey(n)).Result(); err != nil {
			return nil, fmt.Errorf("identify: list organizations: %w", err)
		}
		if o.Domains, err = d.rdb.SMembers(ctx, d.orgDomainsKey(n)).Result(); err != nil {
			return nil, fmt.Errorf("identify: list organizations: %w", err)
		}
		for _, s := range spaces {
			ok, err := d.rdb.SIsMember(ctx, d.spaceOrgsKey(s), n).Result()
			if err != nil {
				return nil, fmt.Errorf("identify: list organizations: %w", err)
			}
			if ok {
				o.Spaces = append(o.Spaces, s)
			}
		}
		sort.Strings(o.Members)
		sort.Strings(o.Domains)
		out = append(out, o)
	}
	return out, nil
}

// Seed writes the directory entries of cfg. It only adds: accounts that
// exist keep their status, and what the CLI added stays.
func (d *Directory) Seed(ctx context.Context, cfg *config.Config) error {
	for _, o := range cfg.Organizations {
		if err := d.AddOrg(ctx, o.Name); err != nil {
			return err
		}
		for _, dom := range o.Domains {
			nd, err := mailaddr.NormalizeDomain(dom)
			if err != nil {
				return fmt.Errorf("identify: seed organization %s: %w", o.Name, err)
			}
			if err := d.AddOrgDomain(ctx, o.Name, nd); err != nil {
				return err
			}
		}
		for _, m := range o.Members {
			na, err := mailaddr.Normalize(m)
			if err != nil {
				return fmt.Errorf("identify: seed organization %s: %w", o.Name, err)
			}
			if err := d.AddOrgMember(ctx, o.Name, na); err != nil {
				return err
			}
		}
	}
	for _, c := range cfg.Customers {
		na, err := mailaddr.Normalize(c.Email)
		if err != nil {
			return fmt.Errorf("identify: seed customer: %w", err)
		}
		if _, err := d.CreateCustomer(ctx, Customer{Email: na, Name: c.Name, Type: c.Type, Status: c.Status, Source: "config"}); err != nil {
			return err
		}
	}
	for _, s := range cfg.Spaces {
		for _, c := range s.Customers {
			na, err := mailaddr.Normalize(c)
			if err != nil {
				return fmt.Errorf("identify: seed space %s: %w", s.Key, err)
			}
			if err := d.AddSpaceCustomer(ctx, s.Key, na); err != nil {
				return err
			}
		}
		for _, o := range s.Organizations {
			if err := d.LinkOrg(ctx, s.Key, o); err != nil {
				return err
			}
		}
	}
	for _, a := range cfg.Agents {
		na, err := mailaddr.Normalize(a)
		if err != nil {
			return fmt.Errorf("identify: seed agent: %w", err)
		}
		if err := d.AddAgent(ctx, na); err != nil {
			return err
		}
	}
	return nil
}

// activate makes a pending account active and leaves any other status
// alone, in one step: a confirmation must never re-enable an account an
// operator disabled.
var activate = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'pending' then redis.call('HSET', KEYS[1], 'status', 'active') end
return status
`)

// Activate confirms a pending account and returns its status before.
func (d *Directory) Activate(ctx context.Context, addr string) (string, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	status, err := activate.Run(ctx, d.rdb, []string{d.customerKey(addr)}).Text()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("identify: customer %s: %w", addr, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("identify: activate %s: %w", addr, err)
	}
	return status, nil
}
