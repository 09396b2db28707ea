package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvRedisURL names the environment variable that overrides redis.url.
const EnvRedisURL = "MAILGW_REDIS_URL"

// Load reads the configuration file at path (none when path is empty),
// applies the environment overrides, the defaults and validation. A
// configuration that does not validate yields an error wrapping a
// *ValidationError that lists every problem; a file that is not YAML
// yields a plain error. Passwords stay as the names of environment
// variables or files: Load does not read them.
func Load(path string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	return load(path, data, os.Getenv)
}

// Parse is Load for a configuration already in memory, without the
// environment overrides.
func Parse(data []byte) (*Config, error) {
	return load("", data, nil)
}

func load(path string, data []byte, getenv func(string) string) (*Config, error) {
	c, err := decode(data)
	if err != nil {
		return nil, wrap(path, err)
	}
	if getenv != nil {
		ApplyEnv(c, getenv)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, wrap(path, err)
	}
	return c, nil
}

// wrap prefixes err with "config: " and the file name, putting a list of
// several problems on lines of their own.
func wrap(path string, err error) error {
	prefix := "config: "
	if path != "" {
		prefix += path + ": "
	}
	var ve *ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 1 {
		return fmt.Errorf("%s%d problems:\n%w", prefix, len(ve.Problems), err)
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// ApplyEnv applies the environment overrides to c: a non-empty
// MAILGW_REDIS_URL replaces redis.url.
func ApplyEnv(c *Config, getenv func(string) string) {
	if v := getenv(EnvRedisURL); v != "" {
		c.Redis.URL = v
	}
}

// decode turns YAML into a Config without defaults. Syntax errors are
// returned as they are; unknown fields and values of the wrong type as a
// *ValidationError naming each field path and line.
func decode(data []byte) (*Config, error) {
	c := new(Config)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // empty file: all defaults
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, fmt.Errorf("yaml: line %d: only one YAML document is allowed", next.Line)
	case !errors.Is(err, io.EOF):
		return nil, err
	}

	w := checker{budget: maxCheckedNodes}
	w.value(&root, reflect.TypeFor[Config](), "")
	if w.budget < 0 && len(w.problems) == 0 {
		return nil, errors.New("too large or too deeply aliased to check")
	}
	if len(w.problems) > 0 {
		return nil, &ValidationError{Problems: w.problems}
	}
	if err := root.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, &ValidationError{Problems: te.Errors}
		}
		return nil, err
	}
	return c, nil
}

// maxCheckedNodes bounds the checker's walk, which follows aliases; the
// YAML decoder itself refuses documents with excessive aliasing.
const maxCheckedNodes = 1 << 20

// checker walks a YAML tree alongside the Go type it will be decoded into
// and reports unknown fields and values of the wrong kind by field path,
// so that "spaces[0].adresses: unknown field (line 12)" points at the typo.
type checker struct {
	problems []string
	budget   int
	inAlias  map[*yaml.Node]bool // anchored nodes being walked through an alias
}

// spend counts one step of the walk and reports whether it may go on.
func (w *checker) spend() bool {
	w.budget--
	return w.budget >= 0
}

// alias resolves an alias node and marks its target as being walked; done
// must be called after the walk. It reports a self-referencing alias.
func (w *checker) alias(n *yaml.Node, path string) (target *yaml.Node, done func()) {
	t := n.Alias
	if t == nil {
		return nil, nil
	}
	if w.inAlias[t] {
		w.add(path, n, fmt.Sprintf("alias *%s refers to itself", n.Value))
		return nil, nil
	}
	if w.inAlias == nil {
		w.inAlias = make(map[*yaml.Node]bool)
	}
	w.inAlias[t] = true
	return t, func() { delete(w.inAlias, t) }
}

// maxDecodeProblems caps the list, which aliases could otherwise multiply.
const maxDecodeProblems = 100

func (w *checker) add(path string, n *yaml.Node, msg string) {
	if path == "" {
		path = "configuration"
	}
	p := fmt.Sprintf("%s: %s (line %d)", path, msg, n.Line)
	if slices.Contains(w.problems, p) {
		return // the same node reached twice through aliases
	}
	if len(w.problems) >= maxDecodeProblems {
		if len(w.problems) == maxDecodeProblems {
			w.problems = append(w.problems, "too many problems; stopped")
		}
		w.budget = 0
		return
	}
	w.problems = append(w.problems, p)
}

var durationType = reflect.TypeFor[Duration]()

func (w *checker) value(n *yaml.Node, t reflect.Type, path string) {
	if !w.spend() {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			w.value(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		if target, done := w.alias(n, path); target != nil {
			w.value(target, t, path)
			done()
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // leaves the zero value, as if the key were absent
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		if _, err := durationFromNode(n); err != nil {
			w.add(path, n, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(path, n, "must be a mapping")
			return
		}
		w.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(path, n, "must be a list")
			return
		}
		for i, e := range n.Content {
			w.value(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(path, n, "must be a string")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Decode(new(bool)) != nil {
			w.add(path, n, "must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			w.add(path, n, "must be an integer")
		}
	}
}

func (w *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content) && w.spend(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			w.merge(v, t, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.add(path, k, "keys must be strings")
			continue
		}
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			w.add(p, k, fmt.Sprintf("set twice (first on line %d)", line))
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			w.add(p, k, "unknown field")
			continue
		}
		w.value(v, ft, p)
	}
}

// merge checks the value of a "<<" merge key: a mapping or a list of
// mappings, possibly through aliases.
func (w *checker) merge(v *yaml.Node, t reflect.Type, path string) {
	if !w.spend() {
		return
	}
	if v.Kind == yaml.AliasNode {
		target, done := w.alias(v, path)
		if target != nil {
			w.merge(target, t, path)
			done()
		}
		return
	}
	switch v.Kind {
	case yaml.MappingNode:
		w.mapping(v, t, path)
	case yaml.SequenceNode:
		for _, e := range v.Content {
			w.merge(e, t, path)
		}
	default:
		w.add(path, v, "a merge (<<) needs a mapping or a list of mappings")
	}
}

// yamlFields maps the YAML keys of struct type t to the field types, as
// the YAML decoder names them.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for k, ft := range yamlFields(f.Type) {
				fields[k] = ft
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// YAML returns the configuration as YAML, as Load would read it back.
// Passwords are never part of a Config (only the names of the variables
// and files holding them); a password inside redis.url is masked.
func (c *Config) YAML() ([]byte, error) {
	out := *c
	out.Redis.URL = RedactURL(c.Redis.URL)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b.Bytes(), nil
}

// RedactURL returns a Redis URL fit for logs and output: the password in
// its user information and in password query parameters (which go-redis
// reads for Sentinel) is masked. An unparsable URL is masked whole.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "REDACTED"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				q.Set(k, "REDACTED")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
