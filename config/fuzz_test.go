package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse panic and that every
// configuration Parse accepts prints as YAML that loads back the same.
func FuzzParse(f *testing.F) {
	design, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		f.Fatal(err)
	}
	demo, err := Demo().YAML()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(design)
	f.Add(demo)
	f.Add([]byte(minimal))
	f.Add([]byte("spaces: [{key: IT, addresses: [it@bücher.example]}]\nverify: {ttl: 90}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
		again, err := back.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		if string(again) != string(out) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, again)
		}
	})
}
