// Package cmdline splits a hook's or a check script's command line the way keepalived
// splits notify and script lines, without a shell.
package cmdline

import (
	"errors"
	"fmt"
	"strings"
)

// ErrCommand is wrapped by [Split] for a command line it cannot split.
var ErrCommand = errors.New("invalid command line")

// Split splits a hook's command line into its program and arguments the way
// keepalived splits notify_* and script lines: unquoted blanks separate words; text in
// single quotes is literal; text in double quotes keeps its blanks, and a backslash inside
// double quotes or outside any quotes makes the next character literal. Quotes are
// removed. No shell expansion takes place.
func Split(s string) ([]string, error) {
	words, _, err := SplitMeta(s)
	return words, err
}

// ShellSyntax lists the characters that mean something to a shell but are literal text to
// keepalived's splitter: a command using them unquoted expects a shell.
const ShellSyntax = "|&;<>$`"

// SplitMeta is [Split] that also returns meta, the first unquoted character of
// ShellSyntax seen (0 when none): a command using one expects a shell.
func SplitMeta(s string) (words []string, meta rune, err error) {
	var (
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			inWord = true
			switch r {
			case '\'', '"':
				quote = r
			case '\\':
				escaped = true
			default:
				if meta == 0 && strings.ContainsRune(ShellSyntax, r) {
					meta = r
				}
				cur.WriteRune(r)
			}
		}
	}
	switch {
	case quote != 0:
		return nil, meta, fmt.Errorf("%w: unterminated %c quote in %q", ErrCommand, quote, s)
	case escaped:
		return nil, meta, fmt.Errorf("%w: trailing backslash in %q", ErrCommand, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, meta, fmt.Errorf("%w: empty command", ErrCommand)
	}
	return words, meta, nil
}
