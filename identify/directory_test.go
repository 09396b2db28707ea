package identify

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/config"
	"mailgw/internal/redistest"
)

// backend is a Redis the directory tests run against; stop simulates an outage.
type backend struct {
	name  string
	start func(t *testing.T) (rdb *redis.Client, stop func())
}

var backends = []backend{
	{"miniredis", func(t *testing.T) (*redis.Client, func()) {
		c, m := redistest.Mini(t)
		return c, m.Close
	}},
	{"redis-server", func(t *testing.T) (*redis.Client, func()) {
		s := redistest.Real(t)
		return s.Client(t), s.Stop
	}},
}

// forEachBackend runs f once per backend with a fresh, empty Redis.
func forEachBackend(t *testing.T, f func(t *testing.T, d *Directory, rdb *redis.Client, stop func())) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rdb, stop := b.start(t)
			d := NewDirectory(rdb, "mailgw:", 5*time.Second)
			d.now = func() time.Time { return testNow }
			f(t, d, rdb, stop)
		})
	}
}

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))

const testCreatedAt = "2025-03-04T04:06:07Z" // testNow in UTC

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// directoryConfig is the config the directory tests seed from. Addresses
// and domains are written as an operator might; Seed normalizes them.
//
//	IT   open;       customers: carol
//	BILL restricted; customers: pat, dan, lee (no account); organization Partner
//	Partner: domains partner.example, members bob
//	Acme:    domains acme.example and partner.example, no members, linked to no space
func directoryConfig() *config.Config {
	return &config.Config{
		Spaces: []config.Space{
			{Key: "IT", ChannelAccess: config.ChannelOpen, Customers: []string{"Carol@Example.com"}},
			{Key: "BILL", ChannelAccess: config.ChannelRestricted,
				Customers:     []string{"pat@example.com", "dan@example.com", "lee@example.com"},
				Organizations: []string{"Partner"}},
		},
		Organizations: []config.Organization{
			{Name: "Partner", Domains: []string{"Partner.Example"}, Members: []string{"Bob@partner.example"}},
			{Name: "Acme", Domains: []string{"acme.example", "partner.example"}},
		},
		Customers: []config.Customer{
			{Email: "carol@example.com", Name: "Carol", Type: TypeInternal, Status: StatusActive},
			{Email: "BOB@Partner.Example", Name: "Bob", Type: TypePortal, Status: StatusActive},
			{Email: "dave@other.example", Name: "Dave", Type: TypePortal, Status: StatusActive},
			{Email: "pat@example.com", Name: "Pat", Type: TypeInternal, Status: StatusPending},
			{Email: "dan@example.com", Name: "Dan", Type: TypeInternal, Status: StatusDisabled},
			{Email: "user@BÜCHER.example", Name: "Umlaut", Type: TypePortal, Status: StatusActive},
		},
		Agents: []string{"Agent@Example.com"},
	}
}

func seeded(t *testing.T, d *Directory) {
	t.Helper()
	if err := d.Seed(testCtx(t), directoryConfig()); err != nil {
		t.Fatalf("Seed: %v", err)
	}
}

func cust(email, name, typ, status string) *Customer {
	return &Customer{Email: email, Name: name, Type: typ, Status: status, Source: "config", CreatedAt: testCreatedAt}
}

func TestDirectoryLookup(t *testing.T) {
	carol := cust("carol@example.com", "Carol", TypeInternal, StatusActive)
	bob := cust("bob@partner.example", "Bob", TypePortal, StatusActive)
	tests := []struct {
		name, addr, space string
		want              Sender
	}{
		{"agent", "agent@example.com", "BILL",
			Sender{Agent: true}},
		{"active customer of the space", "carol@example.com", "IT",
			Sender{Customer: carol, SpaceCustomer: true}},
		{"active customer of another space", "carol@example.com", "BILL",
			Sender{Customer: carol}},
		{"active customer through an organization", "bob@partner.example", "BILL",
			Sender{Customer: bob, SpaceCustomer: true, LinkedOrgDomain: true}},
		{"organization not linked to the space", "bob@partner.example", "IT",
			Sender{Customer: bob}},
		{"active customer of no space", "dave@other.example", "BILL",
			Sender{Customer: cust("dave@other.example", "Dave", TypePortal, StatusActive)}},
		{"pending customer of the space", "pat@example.com", "BILL",
			Sender{Customer: cust("pat@example.com", "Pat", TypeInternal, StatusPending), SpaceCustomer: true}},
		{"pending customer of another space", "pat@example.com", "IT",
			Sender{Customer: cust("pat@example.com", "Pat", TypeInternal, StatusPending)}},
		{"disabled customer of the space", "dan@example.com", "BILL",
			Sender{Customer: cust("dan@example.com", "Dan", TypeInternal, StatusDisabled), SpaceCustomer: true}},
		{"listed in the space without an account", "lee@example.com", "BILL",
			Sender{SpaceCustomer: true}},
		{"unknown on a linked organization's domain", "new@partner.example", "BILL",
			Sender{LinkedOrgDomain: true}},
		{"unknown on a domain of an unlinked organization", "new@acme.example", "BILL",
			Sender{}},
		{"unknown", "new@other.example", "BILL",
			Sender{}},
		{"unknown space", "carol@example.com", "NOPE",
			Sender{Customer: carol}},
		{"IDNA address seeded in Unicode", "user@xn--bcher-kva.example", "IT",
			Sender{Customer: cust("user@xn--bcher-kva.example", "Umlaut", TypePortal, StatusActive)}},
	}
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		seeded(t, d)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.want.Address = tt.addr
				got, err := d.Lookup(testCtx(t), tt.addr, tt.space)
				if err != nil {
					t.Fatalf("Lookup(%s, %s): %v", tt.addr, tt.space, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Lookup(%s, %s) =\n  %s\nwant\n  %s", tt.addr, tt.space, fmtSender(got), fmtSender(tt.want))
				}
			})
		}
	})
}

// Without membership (an open space) the look-up still finds the account
// and the agent, but leaves the space's customer lists unread: one command
// per question fewer, and nothing the policy would ask of an open space.
func TestQueueLookupWithoutMembership(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, rdb *redis.Client, _ func()) {
		seeded(t, d)
		for _, tt := range []struct {
			addr, space string
		}{{"pat@example.com", "BILL"}, {"new@partner.example", "BILL"}, {"carol@example.com", "IT"}} {
			full, err := d.Lookup(testCtx(t), tt.addr, tt.space)
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			pipe := rdb.Pipeline()
			read := d.QueueLookup(ctx, pipe, tt.addr, tt.space, false)
			if pipe.Len() != 2 {
				t.Errorf("%s in %s: %d commands queued, want 2", tt.addr, tt.space, pipe.Len())
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			got, err := read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := full
			want.SpaceCustomer, want.LinkedOrgDomain = false, false
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s in %s without membership =\n  %s\nwant\n  %s", tt.addr, tt.space, fmtSender(got), fmtSender(want))
			}
		}
	})
}

func fmtSender(s Sender) string {
	c := "<nil>"
	if s.Customer != nil {
		c = strings.TrimSpace(strings.Join([]string{s.Customer.Email, s.Customer.Name, s.Customer.Type, s.Customer.Status, s.Customer.Source, s.Customer.CreatedAt}, " "))
	}
	return s.Address + " agent=" + bstr(s.Agent) + " space=" + bstr(s.SpaceCustomer) + " linked=" + bstr(s.LinkedOrgDomain) + " customer=" + c
}

func bstr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestDirectorySeedKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, rdb *redis.Client, _ func()) {
		seeded(t, d)
		ctx := testCtx(t)
		// The keys of DESIGN §4, under the prefix.
		for key, typ := range map[string]string{
			"mailgw:customer:carol@example.com": "hash",
			"mailgw:org:Partner":                "hash",
			"mailgw:org:Partner:members":        "set",
			"mailgw:org:Partner:domains":        "set",
			"mailgw:space:BILL:customers":       "set",
			"mailgw:space:BILL:orgs":            "set",
			"mailgw:agents":                     "set",
		} {
			if got, err := rdb.Type(ctx, key).Result(); err != nil || got != typ {
				t.Errorf("TYPE %s = %q, %v; want %s", key, got, err, typ)
			}
		}
		keys, err := rdb.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "mailgw:") {
				t.Errorf("key %q is outside the prefix", k)
			}
		}
		if got, _ := rdb.SMembers(ctx, "mailgw:org:Partner:domains").Result(); !slices.Equal(got, []string{"partner.example"}) {
			t.Errorf("Partner's domains = %q, want the normalized [partner.example]", got)
		}
	})
}

func TestDirectorySeedKeepsStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		seeded(t, d)
		if err := d.SetStatus(ctx, "carol@example.com", StatusDisabled); err != nil {
			t.Fatal(err)
		}
		if err := d.SetStatus(ctx, "pat@example.com", StatusActive); err != nil {
			t.Fatal(err)
		}
		seeded(t, d)
		for addr, want := range map[string]string{
			"carol@example.com": StatusDisabled,
			"pat@example.com":   StatusActive,
			"dan@example.com":   StatusDisabled,
		} {
			c, err := d.Customer(ctx, addr)
			if err != nil || c.Status != want {
				t.Errorf("after a second Seed, %s has status %q, %v; want %q", addr, c.Status, err, want)
			}
		}
		err := d.SetStatus(ctx, "nobody@example.com", StatusActive)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("SetStatus of a missing customer = %v, want ErrNotFound", err)
		}
		if _, err := d.Customer(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetStatus created nobody@example.com (Customer: %v)", err)
		}
	})
}

func TestDirectoryCreateCustomer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		first := Customer{Email: "eve@example.com", Name: "Eve", Type: TypeInternal, Status: StatusPending, Source: "smtp"}
		created, err := d.CreateCustomer(ctx, first)
		if err != nil || !created {
			t.Fatalf("CreateCustomer = %v, %v; want true", created, err)
		}
		second := Customer{Email: "eve@example.com", Name: "Mallory", Type: TypePortal, Status: StatusActive, Source: "cli", CreatedAt: "2020-01-01T00:00:00Z"}
		created, err = d.CreateCustomer(ctx, second)
		if err != nil || created {
			t.Fatalf("second CreateCustomer = %v, %v; want false", created, err)
		}
		got, err := d.Customer(ctx, "eve@example.com")
		first.CreatedAt = testCreatedAt
		if err != nil || got != first {
			t.Errorf("Customer = %+v, %v; want the first account %+v", got, err, first)
		}
		all, err := d.Customers(ctx)
		if err != nil || len(all) != 1 {
			t.Errorf("Customers = %+v, %v; want one account", all, err)
		}
	})
}

func TestDirectoryProvision(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		seeded(t, d)

		created, err := d.Provision(ctx, Customer{Email: "new@partner.example", Type: TypePortal, Status: StatusPending, Source: "smtp"})
		if err != nil || !created {
			t.Fatalf("Provision = %v, %v; want true", created, err)
		}
		// Both organizations with partner.example gain the member.
		orgs, err := d.Orgs(ctx, []string{"IT", "BILL"})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orgs {
			if !slices.Contains(o.Members, "new@partner.example") {
				t.Errorf("organization %s members %q lack new@partner.example", o.Name, o.Members)
			}
		}
		s, err := d.Lookup(ctx, "new@partner.example", "BILL")
		if err != nil || !s.SpaceCustomer || !s.LinkedOrgDomain || s.Customer == nil || s.Customer.Status != StatusPending {
			t.Errorf("Lookup after Provision = %s, %v; want a pending space customer", fmtSender(s), err)
		}

		// An account on no organization's domain joins none.
		created, err = d.Provision(ctx, Customer{Email: "new@other.example", Type: TypePortal, Status: StatusActive, Source: "smtp"})
		if err != nil || !created {
			t.Fatalf("Provision = %v, %v; want true", created, err)
		}
		if s, err := d.Lookup(ctx, "new@other.example", "BILL"); err != nil || s.SpaceCustomer {
			t.Errorf("Lookup = %s, %v; want no space customer", fmtSender(s), err)
		}

		// An existing account is neither changed nor joined.
		created, err = d.Provision(ctx, Customer{Email: "dave@other.example", Type: TypePortal, Status: StatusPending})
		if err != nil || created {
			t.Errorf("Provision of an existing account = %v, %v; want false", created, err)
		}
		if c, _ := d.Customer(ctx, "dave@other.example"); c.Status != StatusActive || c.Source != "config" {
			t.Errorf("Provision changed an existing account: %+v", c)
		}
	})
}

func TestDirectoryCustomersSorted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		all, err := d.Customers(ctx)
		if err != nil || len(all) != 0 {
			t.Fatalf("Customers of an empty directory = %+v, %v", all, err)
		}
		seeded(t, d)
		for _, a := range []string{"zed@example.com", "aaron@example.com", "mia@example.com"} {
			if _, err := d.CreateCustomer(ctx, Customer{Email: a, Type: TypeInternal, Status: StatusActive, Source: "cli"}); err != nil {
				t.Fatal(err)
			}
		}
		all, err = d.Customers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range all {
			got = append(got, c.Email)
		}
		want := []string{
			"aaron@example.com", "bob@partner.example", "carol@example.com", "dan@example.com",
			"dave@other.example", "mia@example.com", "pat@example.com", "user@xn--bcher-kva.example", "zed@example.com",
		}
		if !slices.Equal(got, want) {
			t.Errorf("Customers = %q\nwant %q", got, want)
		}
		if all[2] != *cust("carol@example.com", "Carol", TypeInternal, StatusActive) {
			t.Errorf("Customers[2] = %+v", all[2])
		}
	})
}

func TestDirectoryRemoveCustomer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		seeded(t, d)

		t.Run("organization member", func(t *testing.T) {
			if err := d.RemoveCustomer(ctx, "bob@partner.example"); err != nil {
				t.Fatalf("RemoveCustomer: %v", err)
			}
			if _, err := d.Customer(ctx, "bob@partner.example"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Customer after RemoveCustomer = %v, want ErrNotFound", err)
			}
			s, err := d.Lookup(ctx, "bob@partner.example", "BILL")
			want := Sender{Address: "bob@partner.example", LinkedOrgDomain: true}
			if err != nil || !reflect.DeepEqual(s, want) {
				t.Errorf("Lookup after RemoveCustomer = %s, %v; want %s", fmtSender(s), err, fmtSender(want))
			}
			orgs, err := d.Orgs(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range orgs {
				if slices.Contains(o.Members, "bob@partner.example") {
					t.Errorf("organization %s still lists bob", o.Name)
				}
			}
			all, _ := d.Customers(ctx)
			for _, c := range all {
				if c.Email == "bob@partner.example" {
					t.Error("Customers still lists bob")
				}
			}
			if err := d.RemoveCustomer(ctx, "bob@partner.example"); !errors.Is(err, ErrNotFound) {
				t.Errorf("second RemoveCustomer = %v, want ErrNotFound", err)
			}
		})

		t.Run("space customer", func(t *testing.T) {
			if err := d.RemoveCustomer(ctx, "pat@example.com"); err != nil {
				t.Fatalf("RemoveCustomer: %v", err)
			}
			// A removed account must not keep access to a restricted space.
			s, err := d.Lookup(ctx, "pat@example.com", "BILL")
			want := Sender{Address: "pat@example.com"}
			if err != nil || !reflect.DeepEqual(s, want) {
				t.Errorf("Lookup after RemoveCustomer = %s, %v; want %s", fmtSender(s), err, fmtSender(want))
			}
		})

		if err := d.RemoveCustomer(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("RemoveCustomer of a missing account = %v, want ErrNotFound", err)
		}
	})
}

func TestDirectoryOrgs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, _ *redis.Client, _ func()) {
		ctx := testCtx(t)
		if orgs, err := d.OrgsForDomain(ctx, "partner.example"); err != nil || len(orgs) != 0 {
			t.Errorf("OrgsForDomain of an empty directory = %q, %v", orgs, err)
		}
		seeded(t, d)
		for domain, want := range map[string][]string{
			"partner.example": {"Acme", "Partner"},
			"acme.example":    {"Acme"},
			"other.example":   nil,
			"example":         nil,
		} {
			if got, err := d.OrgsForDomain(ctx, domain); err != nil || !slices.Equal(got, want) {
				t.Errorf("OrgsForDomain(%s) = %q, %v; want %q", domain, got, err, want)
			}
		}

		if err := d.AddOrg(ctx, "Zeta"); err != nil {
			t.Fatal(err)
		}
		if err := d.AddOrg(ctx, "Zeta"); err != nil {
			t.Errorf("adding an existing organization: %v", err)
		}
		if err := d.AddOrgMember(ctx, "Zeta", "zoe@zeta.example"); err != nil {
			t.Fatal(err)
		}
		if err := d.AddOrgMember(ctx, "Zeta", "abe@zeta.example"); err != nil {
			t.Fatal(err)
		}
		if err := d.AddOrgDomain(ctx, "Zeta", "zeta.example"); err != nil {
			t.Fatal(err)
		}
		for _, space := range []string{"IT", "BILL"} {
			if err := d.LinkOrg(ctx, space, "Zeta"); err != nil {
				t.Fatal(err)
			}
		}
		for name, err := range map[string]error{
			"AddOrgMember": d.AddOrgMember(ctx, "Nope", "x@example.com"),
			"AddOrgDomain": d.AddOrgDomain(ctx, "Nope", "example.com"),
			"LinkOrg":      d.LinkOrg(ctx, "IT", "Nope"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s on a missing organization = %v, want ErrNotFound", name, err)
			}
		}

		got, err := d.Orgs(ctx, []string{"IT", "BILL", "HR"})
		if err != nil {
			t.Fatal(err)
		}
		want := []Organization{
			{Name: "Acme", Domains: []string{"acme.example", "partner.example"}, Members: []string{}},
			{Name: "Partner", Domains: []string{"partner.example"}, Members: []string{"bob@partner.example"}, Spaces: []string{"BILL"}},
			{Name: "Zeta", Domains: []string{"zeta.example"}, Members: []string{"abe@zeta.example", "zoe@zeta.example"}, Spaces: []string{"IT", "BILL"}},
		}
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			g, w := got[i], want[i]
			same = g.Name == w.Name && slices.Equal(g.Domains, w.Domains) && slices.Equal(g.Members, w.Members) && slices.Equal(g.Spaces, w.Spaces)
		}
		if !same {
			t.Errorf("Orgs =\n  %+v\nwant\n  %+v", got, want)
		}

		// A linked organization's domain and members reach the space.
		s, err := d.Lookup(ctx, "zoe@zeta.example", "IT")
		if err != nil || !s.SpaceCustomer || !s.LinkedOrgDomain || s.Customer != nil {
			t.Errorf("Lookup of a member without an account = %s, %v", fmtSender(s), err)
		}
	})
}

func TestDirectoryBackendDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, rdb *redis.Client, stop func()) {
		seeded(t, d)
		// A client that gives up at once, for the calls after the first.
		opt := *rdb.Options()
		opt.MaxRetries, opt.DialerRetries = -1, 1
		fast := redis.NewClient(&opt)
		t.Cleanup(func() { _ = fast.Close() })
		fd := NewDirectory(fast, "mailgw:", time.Second)
		ctx := testCtx(t)
		if _, err := d.Lookup(ctx, "bob@partner.example", "BILL"); err != nil {
			t.Fatalf("Lookup before the outage: %v", err)
		}
		stop()
		start := time.Now()
		s, err := d.Lookup(ctx, "bob@partner.example", "BILL")
		if err == nil {
			t.Fatalf("Lookup against a stopped Redis = %s, nil; want an error", fmtSender(s))
		}
		t.Logf("Lookup error after %v: %v", time.Since(start), err)
		if !strings.HasPrefix(err.Error(), "identify: ") {
			t.Errorf("error %q is not prefixed identify:", err)
		}
		var nerr net.Error
		if errors.Unwrap(err) == nil || !errors.As(err, &nerr) {
			t.Errorf("error %v (%T) does not wrap the client's network error", err, errors.Unwrap(err))
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, redis.Nil) {
			t.Errorf("an outage reads as a missing entry: %v", err)
		}
		for name, err := range map[string]error{
			"Lookup": func() error {
				_, err := fd.Lookup(ctx, "carol@example.com", "IT")
				return err
			}(),
			"Seed": fd.Seed(ctx, directoryConfig()),
			"CreateCustomer": func() error {
				_, err := fd.CreateCustomer(ctx, Customer{Email: "x@example.com"})
				return err
			}(),
			"Customer": func() error {
				_, err := fd.Customer(ctx, "carol@example.com")
				return err
			}(),
			"Customers": func() error {
				_, err := fd.Customers(ctx)
				return err
			}(),
			"SetStatus":      fd.SetStatus(ctx, "carol@example.com", StatusActive),
			"RemoveCustomer": fd.RemoveCustomer(ctx, "carol@example.com"),
			"OrgsForDomain": func() error {
				_, err := fd.OrgsForDomain(ctx, "partner.example")
				return err
			}(),
			"Orgs": func() error {
				_, err := fd.Orgs(ctx, []string{"IT"})
				return err
			}(),
		} {
			if err == nil || !strings.HasPrefix(err.Error(), "identify: ") || errors.Is(err, ErrNotFound) {
				t.Errorf("%s against a stopped Redis = %v; want an identify: error that is no ErrNotFound", name, err)
			}
		}
	})
}

// TestDirectoryRedisErrorReply covers an error the server answers with
// (here WRONGTYPE) rather than a broken connection.
func TestDirectoryRedisErrorReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d *Directory, rdb *redis.Client, _ func()) {
		ctx := testCtx(t)
		if err := rdb.Set(ctx, "mailgw:customer:x@example.com", "not a hash", 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := d.Lookup(ctx, "x@example.com", "IT")
		var rerr redis.Error
		if err == nil || !strings.HasPrefix(err.Error(), "identify: ") || !errors.As(err, &rerr) {
			t.Errorf("Lookup of a mistyped key = %v; want an identify: error wrapping a redis.Error", err)
		}
		if _, err := d.Customer(ctx, "x@example.com"); !errors.As(err, &rerr) {
			t.Errorf("Customer of a mistyped key = %v; want a redis.Error", err)
		}
	})
}

// TestDirectoryTimeout checks that every call is bounded by the directory's
// own timeout, not only by the caller's context.
func TestDirectoryTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	t.Cleanup(func() {
		_ = ln.Close()
		for {
			select {
			case c := <-conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	go func() {
		for {
			c, err := ln.Accept() // accept and never answer
			if err != nil {
				return
			}
			select {
			case conns <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: time.Minute, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := NewDirectory(rdb, "mailgw:", 200*time.Millisecond)
	start := time.Now()
	_, err = d.Lookup(t.Context(), "a@example.com", "IT")
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Errorf("Lookup against a silent server = %v after %v; want a timeout error after about 200ms", err, took)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Errorf("Lookup error %v is no timeout", err)
	}
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}
