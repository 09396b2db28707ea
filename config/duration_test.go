package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationUnmarshal(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"48h", 48 * time.Hour},
		{"10m", 10 * time.Minute},
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"90", 90 * time.Second},
		{`"90"`, 90 * time.Second},
		{"0", 0},
		{"0x10", 16 * time.Second},
		{"-5m", -5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			if err := yaml.Unmarshal([]byte("d: "+tt.in), &v); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got := v.D.D(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDurationUnmarshalErrors(t *testing.T) {
	for _, in := range []string{"abc", "1.5", "10 minutes", "[1, 2]", "{a: b}", "99999999999999999999", "10000000000000"} {
		t.Run(in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+in), &v)
			if err == nil {
				t.Fatalf("unmarshal %q: no error, got %v", in, v.D)
			}
			if !strings.Contains(err.Error(), "line 1") {
				t.Errorf("error %q does not name the line", err)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{48 * time.Hour, "48h"},
		{720 * time.Hour, "720h"},
		{10 * time.Minute, "10m"},
		{90 * time.Second, "1m30s"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + 30*time.Second, "1h0m30s"},
		{5 * time.Second, "5s"},
		{250 * time.Millisecond, "250ms"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := Duration(tt.d).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	type doc struct {
		D Duration `yaml:"d" json:"d"`
	}
	for _, d := range []time.Duration{48 * time.Hour, 10 * time.Minute, 90 * time.Second,
		time.Hour + time.Second, 1500 * time.Millisecond, 0} {
		b, err := yaml.Marshal(doc{Duration(d)})
		if err != nil {
			t.Fatal(err)
		}
		var back doc
		if err := yaml.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %q: %v", b, err)
		}
		if back.D.D() != d {
			t.Errorf("YAML round trip of %v via %q gave %v", d, b, back.D.D())
		}

		j, err := json.Marshal(doc{Duration(d)})
		if err != nil {
			t.Fatal(err)
		}
		var jback doc
		if err := json.Unmarshal(j, &jback); err != nil {
			t.Fatalf("unmarshal %s: %v", j, err)
		}
		if jback.D.D() != d {
			t.Errorf("JSON round trip of %v via %s gave %v", d, j, jback.D.D())
		}
	}
	b, _ := yaml.Marshal(doc{Duration(48 * time.Hour)})
	if string(b) != "d: 48h\n" {
		t.Errorf("marshal 48h = %q, want %q", b, "d: 48h\n")
	}
}
