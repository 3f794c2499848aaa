package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkTree walks a decoded YAML node against t, the raw struct the file decodes into,
// and returns one error per problem, each naming its dotted key path and line: keys that
// t does not have, keys given twice, and values of the wrong type (yaml.v3's own errors
// name a line and a Go type only). path is the key path of n ("" at the top).
func checkTree(n *yaml.Node, t reflect.Type, path string) []error {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value leaves the default
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []error{typeError(n, t, path)}
		}
		return checkMapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{typeError(n, t, path)}
		}
		var errs []error
		for i, item := range n.Content {
			errs = append(errs, checkTree(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	default:
		if n.Kind != yaml.ScalarNode {
			return []error{typeError(n, t, path)}
		}
		// Decode the scalar alone into the field's type: the verdict is yaml.v3's own.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return []error{typeError(n, t, path)}
		}
		return nil
	}
}

// checkMapping checks each key of the mapping n against the yaml tags of struct type t.
func checkMapping(n *yaml.Node, t reflect.Type, path string) []error {
	var errs []error
	seen := map[string]int{} // key → line of its first use
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.Tag == "!!merge" {
			errs = append(errs, checkMerge(v, t, path)...)
			continue
		}
		key := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate key (first at line %d, again at line %d)", key, first, k.Line))
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", key, k.Line))
			continue
		}
		errs = append(errs, checkTree(v, f.Type, key)...)
	}
	return errs
}

// checkMerge checks the value of a YAML merge key ("<<: *anchor" or a list of anchors).
func checkMerge(v *yaml.Node, t reflect.Type, path string) []error {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		var errs []error
		for _, m := range v.Content {
			errs = append(errs, checkTree(m, t, path)...)
		}
		return errs
	}
	return checkTree(v, t, path)
}

// fieldByTag returns the field of struct type t whose yaml tag names key.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// typeError says what the key at path wants (from t) and what n holds.
func typeError(n *yaml.Node, t reflect.Type, path string) error {
	if path == "" {
		path = "config"
	}
	return fmt.Errorf("%s: want %s, got %s (line %d)", path, want(t), got(n), n.Line)
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Struct:
		return "a mapping of keys"
	}
	return t.String()
}

func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}
