package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"mailgw/identify"
	"mailgw/identify/mailaddr"
)

// subcommand runs one verb of "customers" or "orgs" against the directory.
type subcommand struct {
	usage string
	nargs int // positional arguments required
	run   func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error
	flags func(fs *flag.FlagSet)
}

func dispatch(ctx context.Context, name string, subs map[string]*subcommand, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "Usage:\n")
		for _, verb := range slices.Sorted(maps.Keys(subs)) {
			fmt.Fprintf(stderr, "  mailgw %s %s\n", name, subs[verb].usage)
		}
		if len(args) == 0 {
			return usagef("a %s subcommand is required", name)
		}
		return errHelp
	}
	sub, ok := subs[args[0]]
	if !ok {
		return usagef("unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet(name+" "+args[0], flag.ContinueOnError)
	var g globalFlags
	g.register(fs)
	if sub.flags != nil {
		sub.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mailgw %s %s\n", name, sub.usage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if fs.NArg() != sub.nargs {
		fs.Usage()
		return usagef("%s %s takes %d argument(s)", name, args[0], sub.nargs)
	}
	a, err := openApp(ctx, g, stderr, false)
	if err != nil {
		return err
	}
	defer a.close()
	if a.embedded != nil {
		a.log.Warn().Msg("the embedded Redis is empty and is lost when this command exits: set redis.url")
	}
	err = sub.run(ctx, a, fs, stdout)
	if errors.Is(err, identify.ErrNotFound) || errors.Is(err, mailaddr.ErrBadAddress) {
		return usageError{err}
	}
	return err
}

func normalizeArg(s string) (string, error) {
	na, err := mailaddr.Normalize(s)
	if err != nil {
		return "", usageError{err}
	}
	return na, nil
}

func runCustomers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var name, typ, status, spaces, listStatus string
	var asJSON bool
	setStatus := func(status string) func(context.Context, *app, *flag.FlagSet, io.Writer) error {
		return func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
			addr, err := normalizeArg(fs.Arg(0))
			if err != nil {
				return err
			}
			if err := a.directory().SetStatus(ctx, addr, status); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %s\n", addr, status)
			return nil
		}
	}
	subs := map[string]*subcommand{
		"add": {
			usage: "add [--name NAME] [--type internal|portal] [--status active|pending|disabled] [--spaces KEY,...] EMAIL",
			nargs: 1,
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&name, "name", "", "display `name`")
				fs.StringVar(&typ, "type", "", "internal or portal (default: by domain)")
				fs.StringVar(&status, "status", identify.StatusActive, "active, pending or disabled")
				fs.StringVar(&spaces, "spaces", "", "comma-separated space `keys` to list the customer in")
			},
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				c, err := a.newCustomer(fs.Arg(0), name, typ, status)
				if err != nil {
					return err
				}
				return a.addCustomer(ctx, c, splitList(spaces), stdout)
			},
		},
		"import": {
			usage: "import FILE.csv   (columns: email[,name[,type[,status]]]; a header line starting with \"email\" is skipped)",
			nargs: 1,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				return a.importCustomers(ctx, fs.Arg(0), stdout)
			},
		},
		"list": {
			usage: "list [--status active|pending|disabled] [--json]",
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&listStatus, "status", "", "only customers with this status")
				fs.BoolVar(&asJSON, "json", false, "print JSON")
			},
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				list, err := a.directory().Customers(ctx)
				if err != nil {
					return err
				}
				kept := list[:0]
				for _, c := range list {
					if listStatus == "" || c.Status == listStatus {
						kept = append(kept, c)
					}
				}
				if asJSON {
					return json.NewEncoder(stdout).Encode(kept)
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "EMAIL\tNAME\tTYPE\tSTATUS\tSOURCE\tCREATED")
				for _, c := range kept {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Email, dash(c.Name), c.Type, c.Status, dash(c.Source), dash(c.CreatedAt))
				}
				return tw.Flush()
			},
		},
		"show": {
			usage: "show EMAIL",
			nargs: 1,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				addr, err := normalizeArg(fs.Arg(0))
				if err != nil {
					return err
				}
				c, err := a.directory().Customer(ctx, addr)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(c)
			},
		},
		"disable": {usage: "disable EMAIL", nargs: 1, run: setStatus(identify.StatusDisabled)},
		"enable":  {usage: "enable EMAIL", nargs: 1, run: setStatus(identify.StatusActive)},
		"remove": {
			usage: "remove EMAIL",
			nargs: 1,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				addr, err := normalizeArg(fs.Arg(0))
				if err != nil {
					return err
				}
				if err := a.directory().RemoveCustomer(ctx, addr); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: removed\n", addr)
				return nil
			},
		},
	}
	return dispatch(ctx, "customers", subs, args, stdout, stderr)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newCustomer validates command-line input into an account.
func (a *app) newCustomer(email, name, typ, status string) (identify.Customer, error) {
	addr, err := normalizeArg(email)
	if err != nil {
		return identify.Customer{}, err
	}
	if typ == "" {
		settings, err := identify.NewSettings(a.cfg.Access)
		if err != nil {
			return identify.Customer{}, err
		}
		typ = settings.AccountType(mailaddr.Domain(addr))
	}
	if typ != identify.TypeInternal && typ != identify.TypePortal {
		return identify.Customer{}, usagef("%s: type must be internal or portal", addr)
	}
	switch status {
	case identify.StatusActive, identify.StatusPending, identify.StatusDisabled:
	default:
		return identify.Customer{}, usagef("%s: status must be active, pending or disabled", addr)
	}
	return identify.Customer{Email: addr, Name: name, Type: typ, Status: status, Source: "cli"}, nil
}

func (a *app) addCustomer(ctx context.Context, c identify.Customer, spaces []string, stdout io.Writer) error {
	dir := a.directory()
	created, err := dir.Provision(ctx, c)
	if err != nil {
		return err
	}
	for _, s := range spaces {
		key := strings.ToUpper(s)
		if !a.hasSpace(key) {
			return usagef("no space %q in the config", s)
		}
		if err := dir.AddSpaceCustomer(ctx, key, c.Email); err != nil {
			return err
		}
	}
	if created {
		fmt.Fprintf(stdout, "%s: added (%s, %s)\n", c.Email, c.Type, c.Status)
	} else {
		fmt.Fprintf(stdout, "%s: already exists, left as it was\n", c.Email)
	}
	return nil
}

func (a *app) hasSpace(key string) bool {
	for _, s := range a.cfg.Spaces {
		if s.Key == key {
			return true
		}
	}
	return false
}

func (a *app) importCustomers(ctx context.Context, path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return usageError{err}
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	line := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		line++
		if err != nil {
			return usagef("%s: %v", path, err)
		}
		if len(rec) == 0 || line == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "email") {
			continue
		}
		column := func(n int, def string) string {
			if n < len(rec) && strings.TrimSpace(rec[n]) != "" {
				return strings.TrimSpace(rec[n])
			}
			return def
		}
		c, err := a.newCustomer(rec[0], column(1, ""), column(2, ""), column(3, identify.StatusActive))
		if err != nil {
			return usagef("%s:%d: %v", path, line, err)
		}
		if err := a.addCustomer(ctx, c, nil, stdout); err != nil {
			return err
		}
	}
}

func runOrgs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	var domains string
	subs := map[string]*subcommand{
		"add": {
			usage: "add [--domains D,...] NAME",
			nargs: 1,
			flags: func(fs *flag.FlagSet) { fs.StringVar(&domains, "domains", "", "comma-separated `domains`") },
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				dir := a.directory()
				if err := dir.AddOrg(ctx, fs.Arg(0)); err != nil {
					return err
				}
				for _, d := range splitList(domains) {
					if err := addOrgDomain(ctx, dir, fs.Arg(0), d); err != nil {
						return err
					}
				}
				fmt.Fprintf(stdout, "%s: added\n", fs.Arg(0))
				return nil
			},
		},
		"add-member": {
			usage: "add-member ORG EMAIL",
			nargs: 2,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				addr, err := normalizeArg(fs.Arg(1))
				if err != nil {
					return err
				}
				if err := a.directory().AddOrgMember(ctx, fs.Arg(0), addr); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: %s added\n", fs.Arg(0), addr)
				return nil
			},
		},
		"add-domain": {
			usage: "add-domain ORG DOMAIN",
			nargs: 2,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				if err := addOrgDomain(ctx, a.directory(), fs.Arg(0), fs.Arg(1)); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: domain %s added\n", fs.Arg(0), fs.Arg(1))
				return nil
			},
		},
		"link": {
			usage: "link ORG SPACE",
			nargs: 2,
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				key := strings.ToUpper(fs.Arg(1))
				if !a.hasSpace(key) {
					return usagef("no space %q in the config", fs.Arg(1))
				}
				if err := a.directory().LinkOrg(ctx, key, fs.Arg(0)); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: linked to %s\n", fs.Arg(0), key)
				return nil
			},
		},
		"list": {
			usage: "list [--json]",
			flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
			run: func(ctx context.Context, a *app, fs *flag.FlagSet, stdout io.Writer) error {
				keys := make([]string, len(a.cfg.Spaces))
				for i, s := range a.cfg.Spaces {
					keys[i] = s.Key
				}
				orgs, err := a.directory().Orgs(ctx, keys)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(stdout).Encode(orgs)
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ORGANIZATION\tDOMAINS\tSPACES\tMEMBERS")
				for _, o := range orgs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", o.Name, dash(strings.Join(o.Domains, ",")), dash(strings.Join(o.Spaces, ",")), len(o.Members))
				}
				return tw.Flush()
			},
		},
	}
	return dispatch(ctx, "orgs", subs, args, stdout, stderr)
}

func addOrgDomain(ctx context.Context, dir *identify.Directory, org, domain string) error {
	nd, err := mailaddr.NormalizeDomain(domain)
	if err != nil {
		return usageError{err}
	}
	return dir.AddOrgDomain(ctx, org, nd)
}
