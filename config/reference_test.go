package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// configKeys returns the dotted path of every key the config file accepts, from the yaml
// tags of t (the raw file struct): a leaf value, or a list (and, for a list of mappings,
// each of its keys as list[].key). Sections are not keys of their own.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := join(prefix, name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft, key)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, key)
			keys = append(keys, configKeys(ft.Elem(), key+"[]")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// docRow matches a key row of docs/config.md: a table row whose first cell is a key in
// backquotes.
var docRow = regexp.MustCompile("^\\|\\s*`([a-z0-9_.\\[\\]]+)`\\s*\\|")

// TestReferenceDocumentsEveryKey keeps docs/config.md in step with the config struct:
// every key the file accepts has a row, and every row names a key the file accepts.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if m := docRow.FindStringSubmatch(line); m != nil {
			if slices.Contains(documented, m[1]) {
				t.Errorf("docs/config.md documents %s twice", m[1])
			}
			documented = append(documented, m[1])
		}
	}
	keys := configKeys(reflect.TypeFor[raw](), "")
	if len(keys) < 60 {
		t.Fatalf("only %d keys found by reflection: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("docs/config.md has no row for %s", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/config.md documents %s, which is not a config key", k)
		}
	}
}

// TestConfigKeys pins the walk itself on a few known keys of each shape.
func TestConfigKeys(t *testing.T) {
	keys := configKeys(reflect.TypeFor[raw](), "")
	for _, k := range []string{"node.id", "cluster.peers", "cluster.peers[].api_addr", "cluster.tls.key_file", "cluster.raft.journal_retain", "vip.addresses", "notify.any", "log.format"} {
		if !slices.Contains(keys, k) {
			t.Errorf("configKeys lacks %s", k)
		}
	}
	for _, k := range []string{"cluster", "cluster.tls", "cluster.raft", "notify"} {
		if slices.Contains(keys, k) {
			t.Errorf("configKeys lists the section %s as a key", k)
		}
	}
}
