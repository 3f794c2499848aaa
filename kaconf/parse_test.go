package kaconf

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// dump renders a directive tree compactly: keyword[args]{children}.
func dump(ds []*Directive) string {
	var parts []string
	for _, d := range ds {
		s := d.Keyword
		if len(d.Args) > 0 {
			s += fmt.Sprintf("%q", d.Args)
		}
		if d.HasBlock {
			s += "{" + dump(d.Block) + "}"
		}
		parts = append(parts, fmt.Sprintf("%d:%s", d.Line, s))
	}
	return strings.Join(parts, " ")
}

func TestLexTree(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "empty", give: "", want: ""},
		{name: "comments only", give: "# a\n! b\n   # c\n", want: ""},
		{name: "trailing comments", give: "a 1 # x\nb 2 ! y\n", want: `1:a["1"] 2:b["2"]`},
		{name: "comment char inside a word is kept", give: "auth_pass ab#c!d\n", want: `1:auth_pass["ab#c!d"]`},
		{name: "quoted words keep spaces, braces and comment chars", give: `script "/bin/x --a {b} # c"` + "\n", want: `1:script["/bin/x --a {b} # c"]`},
		{name: "escaped quote", give: `s "a\"b\\c"` + "\n", want: `1:s["a\"b\\c"]`},
		{name: "empty quoted word", give: `s ""` + "\n", want: `1:s[""]`},
		{name: "nested blocks on separate lines", give: "a {\n b {\n  c 1\n }\n}\n", want: `1:a{2:b{3:c["1"]}}`},
		{name: "braces sharing a line split it", give: "authentication { auth_type PASS auth_pass 1111 }\n", want: `1:authentication{1:auth_type["PASS" "auth_pass" "1111"]}`},
		{name: "brace glued to words", give: "a{b 1}c 2\n", want: `1:a{1:b["1"]} 1:c["2"]`},
		{name: "open brace on the next line", give: "vrrp_instance X\n{\n state BACKUP\n}\n", want: `1:vrrp_instance["X"]{3:state["BACKUP"]}`},
		{name: "empty block", give: "a { }\n", want: `1:a{}`},
		{name: "two closes on one line", give: "a { b { c } }\n", want: `1:a{1:b{1:c}}`},
		{name: "CRLF and tabs", give: "a\t1\r\nb {\r\n\tc\r\n}\r\n", want: `1:a["1"] 2:b{3:c}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := lex(strings.NewReader(tt.give))
			if err != nil {
				t.Fatalf("lex: %v", err)
			}
			ds, err := tree(lines)
			if err != nil {
				t.Fatalf("tree: %v", err)
			}
			if got := dump(ds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "unterminated quote", give: "a {\n script \"x\n}\n", want: "line 2: unterminated quote"},
		{name: "unexpected close", give: "a 1\n}\n", want: "line 2: unexpected }"},
		{name: "unclosed block", give: "a {\n b {\n c\n", want: "line 2: block b not closed"},
		{name: "lone open brace", give: "{\n}\n", want: "line 1: { without a keyword"},
		{name: "bad priority", give: "vrrp_instance A {\n priority high\n}\n", want: `line 2: priority: want an integer 1..255, got "high"`},
		{name: "priority 256", give: "vrrp_instance A {\n priority 256\n}\n", want: "line 2: priority: want an integer 1..255"},
		{name: "vrid 0", give: "vrrp_instance A {\n virtual_router_id 0\n}\n", want: "virtual_router_id: want an integer 1..255"},
		{name: "bad advert_int", give: "vrrp_instance A {\n advert_int 1s\n}\n", want: `advert_int: want seconds 0..255, got "1s"`},
		{name: "zero advert_int", give: "vrrp_instance A {\n advert_int 0\n}\n", want: "advert_int must be positive"},
		{name: "bad state", give: "vrrp_instance A {\n state LEADER\n}\n", want: `state: want MASTER or BACKUP, got "LEADER"`},
		{name: "bad VIP", give: "vrrp_instance A {\n virtual_ipaddress {\n 10.0.0.300\n }\n}\n", want: `line 3: virtual_ipaddress: bad address "10.0.0.300"`},
		{name: "instance without name", give: "vrrp_instance {\n}\n", want: "line 1: vrrp_instance needs a value"},
		{name: "bad script weight", give: "vrrp_script s {\n weight 300\n}\n", want: "weight: want an integer -253..253"},
		{name: "every error reported", give: "vrrp_instance A {\n priority x\n version 4\n}\n", want: "line 2: priority: want an integer 1..255, got \"x\"\nline 3: version: want an integer 2..3, got \"4\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.give))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "clean", give: "vrrp_instance A {\n nopreempt\n}\n", want: nil},
		{name: "unknown keyword", give: "vrrp_instance A {\n frobnicate 1\n}\n", want: []string{"line 2: vrrp_instance A: unknown keyword frobnicate"}},
		{name: "known keyword kept silently", give: "vrrp_instance A {\n unicast_peer {\n 1.2.3.4\n }\n}\n", want: nil},
		{name: "unknown top-level", give: "frob {\n}\n", want: []string{"line 1: unknown top-level keyword frob"}},
		{name: "include", give: "include /etc/k/*.conf\n", want: []string{"line 1: include /etc/k/*.conf not followed: convert the included file separately"}},
		{name: "extra words ignored like keepalived", give: "vrrp_instance A {\n priority 100 200\n}\n", want: []string{"line 2: priority: keepalived ignores the rest of the line: 200"}},
		{name: "one-line authentication", give: "vrrp_instance A {\n authentication { auth_type PASS auth_pass x }\n}\n",
			want: []string{`line 2: authentication: keepalived reads one keyword per line and ignores "auth_pass x" after auth_type PASS`}},
		{name: "parameter definition", give: "$IF=eth0\n", want: []string{"line 1: parameter definition $IF=eth0 not supported: substitute it by hand"}},
		{name: "substitution", give: "vrrp_instance A {\n interface $IF\n}\n", want: []string{`line 2: interface: $ substitution not supported in "$IF"`}},
		{name: "conditional line", give: "vrrp_instance A {\n @node1 priority 150\n}\n", want: []string{"line 2: conditional line @node1 kept unconditionally"}},
		{name: "unknown script keyword", give: "vrrp_script s {\n frob\n}\n", want: []string{"line 2: vrrp_script s: unknown keyword frob"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.give))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, want := strings.Join(f.Warnings, "\n"), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestParseSeed(t *testing.T) {
	f := parseFile(t, "seed.conf")
	s := f.Script("chk_mysql")
	if s == nil || s.Script != "/etc/keepalived/check_mysql.sh" || s.Interval != time.Second || s.Fall != 2 || s.Rise != 2 {
		t.Fatalf("script = %+v", s)
	}
	in := f.Instance("VI_1")
	if in == nil {
		t.Fatal("no VI_1")
	}
	got := fmt.Sprintf("%s %s vrid=%d prio=%d int=%s nopreempt=%t auth=%s/%s track=%v vips=%v notify=%q",
		in.State, in.Interface, in.VRID, in.Priority, in.AdvertInt, in.Nopreempt, in.AuthType, in.AuthPass,
		in.TrackScripts[0].Name, in.VIPs[0].Prefix, in.NotifyMaster.Cmd)
	want := `BACKUP eth0 vrid=51 prio=100 int=5s nopreempt=true auth=PASS/1111 track=chk_mysql vips=10.0.0.100/32 notify="/etc/keepalived/notify.sh master"`
	if got != want {
		t.Errorf("instance\n%s\nwant\n%s", got, want)
	}
}

func TestParseDetails(t *testing.T) {
	f, err := Parse(strings.NewReader(`vrrp_instance A {
    preempt
    nopreempt
    advert_int 0.05
    track_script {
        s1
        s2 weight -5 reverse
        s3 weight 10 noreverse
    }
    virtual_ipaddress {
        10.0.0.1/24 brd 10.0.0.255 dev eth1 label eth1:v scope global
        fe80::1
    }
    notify_backup /bin/b.sh nobody:nogroup
}
`))
	if err != nil {
		t.Fatal(err)
	}
	in := f.Instances[0]
	got := fmt.Sprintf("nopreempt=%t int=%s tracks=%+v vip0=%s/%s/%s/%q vip1=%s notify=%+v",
		in.Nopreempt, in.AdvertInt, in.TrackScripts, in.VIPs[0].Prefix, in.VIPs[0].Dev, in.VIPs[0].Label, in.VIPs[0].Options,
		in.VIPs[1].Prefix, in.NotifyBackup)
	want := `nopreempt=true int=50ms tracks=[{Name:s1 Line:6 Weight:0 WeightSet:false Reverse:false} {Name:s2 Line:7 Weight:-5 WeightSet:true Reverse:true} {Name:s3 Line:8 Weight:10 WeightSet:true Reverse:false}] vip0=10.0.0.1/24/eth1/eth1:v/["brd" "10.0.0.255" "scope" "global"] vip1=fe80::1/128 notify={Cmd:/bin/b.sh User:nobody:nogroup Line:14}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
