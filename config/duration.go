package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in the configuration file as a Go
// duration string ("90s", "10m", "48h", "1h30m") or as a plain integer
// number of seconds. It is printed back in the string form.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the shortest Go duration string for d: "48h" rather
// than time.Duration's "48h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseDuration reads a duration string; a bare integer counts seconds.
// Its error does not carry a position so that callers can add their own.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return secondsToDuration(n, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use a number with a unit, such as 90s, 10m or 48h", s)
	}
	return d, nil
}

func secondsToDuration(n int64, text string) (time.Duration, error) {
	limit := int64(math.MaxInt64 / int64(time.Second))
	if n > limit || n < -limit {
		return 0, fmt.Errorf("invalid duration %q: out of range", text)
	}
	return time.Duration(n) * time.Second, nil
}

// durationFromNode decodes a YAML scalar: an integer (seconds, in any
// notation YAML accepts) or a duration string.
func durationFromNode(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("must be a duration such as 90s, 10m or 48h")
	}
	if n.ShortTag() == "!!int" {
		var secs int64
		if err := n.Decode(&secs); err != nil {
			return 0, fmt.Errorf("invalid duration %q: out of range", n.Value)
		}
		return secondsToDuration(secs, n.Value)
	}
	return parseDuration(n.Value)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := durationFromNode(n)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText implements encoding.TextMarshaler, so that JSON shows the
// same string form as YAML.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	*d = Duration(v)
	return nil
}
