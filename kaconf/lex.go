package kaconf

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// line is one logical keepalived.conf line: keepalived splits a physical line at every brace,
// so "a { b c }" is the three lines "a {", "b c" and "}".
type line struct {
	num   int      // physical line number, from 1
	words []string // words, quotes removed
	open  bool     // the line ended with "{"
	close bool     // the line is "}"
}

// lex splits r into logical lines. '#' or '!' at the start of a word (outside quotes) starts
// a comment; "…" quotes a word that may hold spaces, braces and comment characters (\" and
// \\ escape inside); '{' and '}' split the line wherever they stand outside quotes.
func lex(r io.Reader) ([]line, error) {
	var out []line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for num := 1; sc.Scan(); num++ {
		cur := line{num: num}
		flush := func() {
			if len(cur.words) > 0 || cur.open {
				out = append(out, cur)
			}
			cur = line{num: num}
		}
		s := sc.Text()
		for i := 0; i < len(s); {
			c := s[i]
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
				i++
			case c == '#' || c == '!':
				i = len(s)
			case c == '{':
				cur.open = true
				flush()
				i++
			case c == '}':
				flush()
				out = append(out, line{num: num, close: true})
				i++
			case c == '"':
				var b strings.Builder
				j := i + 1
				closed := false
				for j < len(s) {
					if s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
						b.WriteByte(s[j+1])
						j += 2
						continue
					}
					if s[j] == '"' {
						closed = true
						j++
						break
					}
					b.WriteByte(s[j])
					j++
				}
				if !closed {
					return nil, fmt.Errorf("line %d: unterminated quote", num)
				}
				cur.words = append(cur.words, b.String())
				i = j
			default:
				j := i
				for j < len(s) && !strings.ContainsRune(" \t\r\f\v{}\"", rune(s[j])) {
					j++
				}
				cur.words = append(cur.words, s[i:j])
				i = j
			}
		}
		flush()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return out, nil
}

// Directive is one keyword line of keepalived.conf with its arguments and, when the line
// opened a block, the directives inside it.
type Directive struct {
	// Keyword is the first word.
	Keyword string
	// Args are the remaining words, quotes removed.
	Args []string
	// Line is the physical line number, from 1.
	Line int
	// Block holds the directives inside the braces; nil when the line opened no block.
	Block []*Directive
	// HasBlock reports whether the line opened a block (which may be empty).
	HasBlock bool
}

// String renders d as it would appear on one line (without its block).
func (d *Directive) String() string {
	s := d.Keyword
	for _, a := range d.Args {
		if a == "" || strings.ContainsAny(a, " \t{}#!\"") {
			a = fmt.Sprintf("%q", a)
		}
		s += " " + a
	}
	return s
}

// tree builds the directive tree from logical lines. A "{" alone on a line opens the block of
// the directive before it.
func tree(lines []line) ([]*Directive, error) {
	type frame struct {
		list *[]*Directive
		open *Directive
	}
	var root []*Directive
	stack := []frame{{list: &root}}
	for _, l := range lines {
		top := &stack[len(stack)-1]
		switch {
		case l.close:
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: unexpected }", l.num)
			}
			stack = stack[:len(stack)-1]
		case len(l.words) == 0 && l.open:
			n := len(*top.list)
			if n == 0 || (*top.list)[n-1].HasBlock {
				return nil, fmt.Errorf("line %d: { without a keyword", l.num)
			}
			d := (*top.list)[n-1]
			d.HasBlock = true
			stack = append(stack, frame{list: &d.Block, open: d})
		default:
			d := &Directive{Keyword: l.words[0], Args: l.words[1:], Line: l.num, HasBlock: l.open}
			*top.list = append(*top.list, d)
			if l.open {
				stack = append(stack, frame{list: &d.Block, open: d})
			}
		}
	}
	if len(stack) > 1 {
		d := stack[len(stack)-1].open
		return nil, fmt.Errorf("line %d: block %s not closed", d.Line, d.Keyword)
	}
	return root, nil
}
