package cmdline

import (
	"errors"
	"slices"
	"testing"
)

func TestSplitMeta(t *testing.T) {
	tests := []struct {
		give string
		want []string
		meta rune
		err  string
	}{
		{give: "/bin/notify.sh", want: []string{"/bin/notify.sh"}},
		{give: "  /bin/notify.sh   master\tnow ", want: []string{"/bin/notify.sh", "master", "now"}},
		{give: `/bin/n.sh 'a b' "c d" e\ f`, want: []string{"/bin/n.sh", "a b", "c d", "e f"}},
		{give: `/bin/n.sh 'it''s' "say \"hi\"" ''`, want: []string{"/bin/n.sh", "its", `say "hi"`, ""}},
		{give: `/bin/n.sh '$HOME' "a|b"`, want: []string{"/bin/n.sh", "$HOME", "a|b"}},
		{give: `/bin/n.sh 'single \n stays'`, want: []string{"/bin/n.sh", `single \n stays`}},
		{give: `/bin/n.sh a|b`, want: []string{"/bin/n.sh", "a|b"}, meta: '|'},
		{give: `/bin/n.sh $X > f`, want: []string{"/bin/n.sh", "$X", ">", "f"}, meta: '$'},
		{give: `/bin/n.sh 'open`, err: `invalid command line: unterminated ' quote in "/bin/n.sh 'open"`},
		{give: `/bin/n.sh "open`, err: `invalid command line: unterminated " quote in "/bin/n.sh \"open"`},
		{give: `/bin/n.sh \`, err: `invalid command line: trailing backslash in "/bin/n.sh \\"`},
		{give: " \t", err: "invalid command line: empty command"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, meta, err := SplitMeta(tt.give)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, ErrCommand) {
					t.Fatalf("err = %v, want %q wrapping ErrCommand", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) || meta != tt.meta {
				t.Fatalf("SplitMeta(%q) = %q, %q, %v; want %q, %q", tt.give, got, meta, err, tt.want, tt.meta)
			}
		})
	}
}
