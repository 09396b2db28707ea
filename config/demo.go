package config

// Demo returns the built-in configuration mailgw serves when started
// without --config: two spaces on demo.example, an organization, a few
// customers and an agent, with an embedded Redis (no redis.url). Defaults
// are applied; the result validates. Each call returns a new Config.
func Demo() *Config {
	c := &Config{
		Hostname: "localhost",
		Access: Access{
			InternalDomains:  []string{"demo.example"},
			ExternalAccounts: ExternalListedDomains,
			ExternalDomains:  []string{"partner.example", "customer.example"},
			Signup:           SignupVerify,
			Blocked:          []string{"spam.example", "*.bad.example"},
		},
		Spaces: []Space{
			{Key: "IT", Name: "IT help", Addresses: []string{"it@demo.example"}, ChannelAccess: ChannelOpen},
			{Key: "BILL", Name: "Billing", Addresses: []string{"billing@demo.example"},
				ChannelAccess: ChannelRestricted, Organizations: []string{"Partner"}},
		},
		Organizations: []Organization{
			{Name: "Partner", Domains: []string{"partner.example"}, Members: []string{"bob@partner.example"}},
		},
		Customers: []Customer{
			{Email: "carol@demo.example", Name: "Carol", Type: TypeInternal},
			{Email: "dave@customer.example", Name: "Dave", Type: TypePortal},
		},
		Agents: []string{"agent@demo.example"},
	}
	c.ApplyDefaults()
	return c
}
