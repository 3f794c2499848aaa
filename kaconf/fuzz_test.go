package kaconf

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse and Convert never panic, and that Convert output for any
// parsed instance is produced without error.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/seed.conf", "testdata/kitchen.conf"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("a { b { \"c\n")
	f.Add("vrrp_instance A { virtual_ipaddress { 10.0.0.1/33 } }")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, in := range cfg.Instances {
			if _, _, err := Convert(cfg, in.Name); err != nil && cfg.Instance(in.Name) == in {
				t.Fatalf("Convert(%q): %v", in.Name, err)
			}
		}
	})
}
