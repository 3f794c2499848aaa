package probe

import (
	"errors"
	"strings"
	"testing"
)

const (
	u1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	u2 = "8a94f357-aab4-11df-86ab-c80aa9429563"
)

func TestParseGTIDSet(t *testing.T) {
	tests := []struct {
		name   string
		flavor Flavor
		give   string
		want   string
	}{
		{"mysql empty", FlavorMySQL, "", ""},
		{"mysql blanks", FlavorMySQL, " \n", ""},
		{"mysql single", FlavorMySQL, u1 + ":1-5", u1 + ":1-5"},
		{"mysql upper case uuid", FlavorMySQL, strings.ToUpper(u1) + ":1-5", u1 + ":1-5"},
		{"mysql single number", FlavorMySQL, u1 + ":7", u1 + ":7"},
		{"mysql merge adjacent", FlavorMySQL, u1 + ":1-5:6-9:11", u1 + ":1-9:11"},
		{"mysql merge overlap unsorted", FlavorMySQL, u1 + ":7-9:1-8", u1 + ":1-9"},
		{"mysql two sources sorted", FlavorMySQL, u2 + ":1-3," + u1 + ":1-5:7", u1 + ":1-5:7," + u2 + ":1-3"},
		{"mysql gtid_executed newlines", FlavorMySQL, u1 + ":1-5,\n" + u2 + ":1-3", u1 + ":1-5," + u2 + ":1-3"},
		{"mysql same source twice", FlavorMySQL, u1 + ":1-2," + u1 + ":3-4", u1 + ":1-4"},
		{"mysql uuid without intervals", FlavorMySQL, u1, ""},
		{"mysql tagged", FlavorMySQL, u1 + ":tag1:1-5", u1 + ":tag1:1-5"},
		{"mysql tag case folded", FlavorMySQL, u1 + ":Tag_A:1-5", u1 + ":tag_a:1-5"},
		{"mysql untagged and tagged", FlavorMySQL, u1 + ":1-3:11:47-49:tag1:1-5", u1 + ":1-3:11:47-49:tag1:1-5"},
		{"mysql tags sorted", FlavorMySQL, u1 + ":zz:1:aa:2", u1 + ":aa:2:zz:1"},
		{"mysql tag then untagged source", FlavorMySQL, u1 + ":t:1," + u1 + ":4", u1 + ":4:t:1"},
		{"mysql max gno", FlavorMySQL, u1 + ":9223372036854775807", u1 + ":9223372036854775807"},
		{"mariadb empty", FlavorMariaDB, "", ""},
		{"mariadb one", FlavorMariaDB, "0-1-100", "0-1-100"},
		{"mariadb two domains sorted", FlavorMariaDB, "1-11-42,0-1-100", "0-1-100,1-11-42"},
		{"mariadb blanks", FlavorMariaDB, " 0-1-100 , 1-11-42\n", "0-1-100,1-11-42"},
		{"mariadb binlog state", FlavorMariaDB, "0-2-5,0-1-9", "0-1-9,0-2-5"},
		{"mariadb duplicate keeps max", FlavorMariaDB, "0-1-5,0-1-9,0-1-3", "0-1-9"},
		{"mariadb max values", FlavorMariaDB, "4294967295-4294967295-18446744073709551615", "4294967295-4294967295-18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := ParseGTIDSet(tt.flavor, tt.give)
			if err != nil {
				t.Fatalf("ParseGTIDSet(%q): %v", tt.give, err)
			}
			if got := g.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseGTIDSetErrors(t *testing.T) {
	tests := []struct {
		name      string
		flavor    Flavor
		give      string
		wantToken string // must appear in the error
	}{
		{"mysql bad uuid", FlavorMySQL, "3e11fa47-71ca-11e1-9e33:1-5", "3e11fa47-71ca-11e1-9e33:1-5"},
		{"mysql non hex uuid", FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa942956z:1", "c80aa942956z"},
		{"mysql zero", FlavorMySQL, u1 + ":0", u1 + ":0"},
		{"mysql reversed", FlavorMySQL, u1 + ":5-3", "5-3"},
		{"mysql empty element", FlavorMySQL, u1 + "::1", u1 + "::1"},
		{"mysql trailing colon", FlavorMySQL, u1 + ":1:", u1 + ":1:"},
		{"mysql empty token", FlavorMySQL, u1 + ":1,," + u2 + ":1", `""`},
		{"mysql tag without interval", FlavorMySQL, u1 + ":tag1", "tag1"},
		{"mysql two tags", FlavorMySQL, u1 + ":a:b:1", "a:b:1"},
		{"mysql tag starts with digit", FlavorMySQL, u1 + ":1a:1", "1a"},
		{"mysql tag too long", FlavorMySQL, u1 + ":" + strings.Repeat("a", 33) + ":1", strings.Repeat("a", 33)},
		{"mysql tag bad char", FlavorMySQL, u1 + ":ta-g:1", "ta-g"},
		{"mysql above 2^63-1", FlavorMySQL, u1 + ":9223372036854775808", "9223372036854775808"},
		{"mysql negative", FlavorMySQL, u1 + ":-1", "-1"},
		{"mysql plus sign", FlavorMySQL, u1 + ":+1", "+1"},
		{"mariadb two parts", FlavorMariaDB, "0-1", `"0-1"`},
		{"mariadb four parts", FlavorMariaDB, "0-1-2-3", "0-1-2-3"},
		{"mariadb domain overflow", FlavorMariaDB, "4294967296-1-1", "4294967296"},
		{"mariadb server not number", FlavorMariaDB, "0-x-1", "0-x-1"},
		{"mariadb seq overflow", FlavorMariaDB, "0-1-18446744073709551616", "18446744073709551616"},
		{"mariadb empty item", FlavorMariaDB, "0-1-1,,1-2-2", `""`},
		{"mariadb mysql syntax", FlavorMariaDB, u1 + ":1-5", u1},
		{"mariadb inner blank", FlavorMariaDB, "0- 1-5", "0- 1-5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGTIDSet(tt.flavor, tt.give)
			if err == nil {
				t.Fatalf("ParseGTIDSet(%q) succeeded, want error", tt.give)
			}
			if !errors.Is(err, ErrBadGTID) {
				t.Errorf("error %v does not wrap ErrBadGTID", err)
			}
			if !strings.Contains(err.Error(), tt.wantToken) {
				t.Errorf("error %q does not name %q", err, tt.wantToken)
			}
		})
	}
}

func TestParseGTIDSetUnknownFlavor(t *testing.T) {
	if _, err := ParseGTIDSet("postgres", ""); err == nil {
		t.Fatal("unknown flavor accepted")
	}
}

func TestGTIDSetRelations(t *testing.T) {
	tests := []struct {
		name         string
		flavor       Flavor
		g, o         string
		wantContains bool
		wantEqual    bool
		wantMissing  string // what o has that g lacks
		wantCount    uint64
	}{
		{"mysql equal", FlavorMySQL, u1 + ":1-5", u1 + ":1-5", true, true, "", 0},
		{"mysql equal different spelling", FlavorMySQL, u1 + ":1-3:4-5", strings.ToUpper(u1) + ":1-5", true, true, "", 0},
		{"mysql superset", FlavorMySQL, u1 + ":1-10", u1 + ":3-5", true, false, "", 0},
		{"mysql subset", FlavorMySQL, u1 + ":3-5", u1 + ":1-10", false, false, u1 + ":1-2:6-10", 7},
		{"mysql hole", FlavorMySQL, u1 + ":1-4:6-10", u1 + ":1-10", false, false, u1 + ":5", 1},
		{"mysql many holes", FlavorMySQL, u1 + ":2:4:6-7", u1 + ":1-8", false, false, u1 + ":1:3:5:8", 4},
		{"mysql other source", FlavorMySQL, u1 + ":1-10", u2 + ":1", false, false, u2 + ":1", 1},
		{"mysql tag differs", FlavorMySQL, u1 + ":1-10", u1 + ":t:1-2", false, false, u1 + ":t:1-2", 2},
		{"mysql tagged contained", FlavorMySQL, u1 + ":1-3:t:1-5", u1 + ":t:2-3", true, false, "", 0},
		{"mysql empty in anything", FlavorMySQL, u1 + ":1", "", true, false, "", 0},
		{"mysql both empty", FlavorMySQL, "", "", true, true, "", 0},
		{"mysql from empty", FlavorMySQL, "", u1 + ":1-3," + u2 + ":5", false, false, u1 + ":1-3," + u2 + ":5", 4},
		{"mariadb equal", FlavorMariaDB, "0-1-100,1-11-42", "1-11-42,0-1-100", true, true, "", 0},
		{"mariadb ahead", FlavorMariaDB, "0-1-100", "0-1-90", true, false, "", 0},
		{"mariadb behind", FlavorMariaDB, "0-1-90", "0-1-100", false, false, "0-1-100", 10},
		{"mariadb missing domain", FlavorMariaDB, "0-1-100", "0-1-100,1-11-42", false, false, "1-11-42", 42},
		{"mariadb extra domain in g", FlavorMariaDB, "0-1-100,1-11-42", "0-1-100", true, false, "", 0},
		{"mariadb other server same domain ahead", FlavorMariaDB, "0-2-120", "0-1-100", true, false, "", 0},
		{"mariadb per-domain max", FlavorMariaDB, "0-1-50,0-2-120", "0-1-100", true, false, "", 0},
		{"mariadb only bigger entries missing", FlavorMariaDB, "0-1-100", "0-1-90,0-2-110", false, false, "0-2-110", 10},
		{"mariadb domains independent", FlavorMariaDB, "0-1-100,1-11-1", "0-1-1,1-11-5", false, false, "1-11-5", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustParseGTIDSet(tt.flavor, tt.g)
			o := mustParseGTIDSet(tt.flavor, tt.o)
			if got := g.Contains(o); got != tt.wantContains {
				t.Errorf("Contains = %v, want %v", got, tt.wantContains)
			}
			if got := equalSets(g, o); got != tt.wantEqual {
				t.Errorf("Equal = %v, want %v", got, tt.wantEqual)
			}
			if got := equalSets(o, g); got != tt.wantEqual {
				t.Errorf("Equal (swapped) = %v, want %v", got, tt.wantEqual)
			}
			if got := g.Missing(o).String(); got != tt.wantMissing {
				t.Errorf("Missing = %q, want %q", got, tt.wantMissing)
			}
			if got := countMissing(g, o); got != tt.wantCount {
				t.Errorf("CountMissing = %d, want %d", got, tt.wantCount)
			}
			// Adding what is missing makes g contain o.
			if u := g.Union(g.Missing(o)); !u.Contains(o) {
				t.Errorf("g ∪ Missing = %q does not contain o", u)
			}
		})
	}
}

func TestGTIDSetFlavorMismatch(t *testing.T) {
	my := mustParseGTIDSet(FlavorMySQL, u1+":1")
	ma := mustParseGTIDSet(FlavorMariaDB, "0-1-1")
	emptyMy := mustParseGTIDSet(FlavorMySQL, "")
	if my.Contains(ma) || ma.Contains(my) {
		t.Error("a set contains a non-empty set of the other flavor")
	}
	if !ma.Contains(emptyMy) || !ma.Contains(GTIDSet{}) {
		t.Error("an empty set of any flavor is not contained")
	}
	if equalSets(my, ma) {
		t.Error("sets of different flavors are equal")
	}
	if !equalSets(emptyMy, GTIDSet{}) {
		t.Error("two empty sets differ")
	}
	if got := my.Missing(ma); !equalSets(got, ma) {
		t.Errorf("Missing across flavors = %q, want all of %q", got, ma)
	}
}

func TestGTIDSetDomain(t *testing.T) {
	tests := []struct {
		name   string
		flavor Flavor
		give   string
		domain uint32
		want   string
	}{
		{"mariadb one of two", FlavorMariaDB, "0-1-100,1-11-42", 1, "1-11-42"},
		{"mariadb several servers", FlavorMariaDB, "0-1-100,1-11-42,1-12-40", 1, "1-11-42,1-12-40"},
		{"mariadb absent", FlavorMariaDB, "0-1-100", 7, ""},
		{"mysql unchanged", FlavorMySQL, u1 + ":1-5," + u2 + ":1", 1, u1 + ":1-5," + u2 + ":1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParseGTIDSet(tt.flavor, tt.give).Domain(tt.domain).String(); got != tt.want {
				t.Errorf("Domain(%d) = %q, want %q", tt.domain, got, tt.want)
			}
		})
	}
}

func TestExtraTransactions(t *testing.T) {
	tests := []struct {
		name          string
		flavor        Flavor
		oldOwner, new string
		domain        uint32
		want          string
	}{
		{"mariadb none", FlavorMariaDB, "1-1-100,2-2-50", "1-1-100,2-2-80", 1, ""},
		{"mariadb unshipped tail", FlavorMariaDB, "1-1-105,2-2-50", "1-1-100,2-2-80", 1, "1-1-105"},
		{"mariadb other domain ignored", FlavorMariaDB, "1-1-100,2-2-90", "1-1-100,2-2-80", 1, ""},
		{"mysql tail", FlavorMySQL, u1 + ":1-105," + u2 + ":1-50", u1 + ":1-100," + u2 + ":1-80", 0, u1 + ":101-105"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ExtraTransactions(mustParseGTIDSet(tt.flavor, tt.oldOwner), mustParseGTIDSet(tt.flavor, tt.new), tt.domain)
			if got.String() != tt.want {
				t.Errorf("ExtraTransactions = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGTIDSetImmutable(t *testing.T) {
	g := mustParseGTIDSet(FlavorMariaDB, "0-1-5")
	_ = g.Union(mustParseGTIDSet(FlavorMariaDB, "0-1-9"))
	d := g.Domain(0)
	_ = d.Union(mustParseGTIDSet(FlavorMariaDB, "0-1-10"))
	if g.String() != "0-1-5" {
		t.Errorf("g changed to %q", g)
	}
	m := mustParseGTIDSet(FlavorMySQL, u1+":1-3")
	_ = m.Union(mustParseGTIDSet(FlavorMySQL, u1+":4-9"))
	if m.String() != u1+":1-3" {
		t.Errorf("m changed to %q", m)
	}
}

func fuzzRoundTrip(t *testing.T, f Flavor, s string) {
	g, err := ParseGTIDSet(f, s)
	if err != nil {
		if !errors.Is(err, ErrBadGTID) {
			t.Fatalf("error %v does not wrap ErrBadGTID", err)
		}
		return
	}
	out := g.String()
	g2, err := ParseGTIDSet(f, out)
	if err != nil {
		t.Fatalf("String() %q of %q does not parse: %v", out, s, err)
	}
	if !equalSets(g, g2) || !equalSets(g2, g) {
		t.Fatalf("round trip of %q: %q != %q", s, out, g2)
	}
	if g2.String() != out {
		t.Fatalf("String not canonical: %q then %q", out, g2)
	}
	if !g.Contains(g2) || !g2.Contains(g) || !g.Missing(g2).IsEmpty() {
		t.Fatalf("%q: a set does not contain its own round trip", s)
	}
}

func FuzzParseGTIDSetMySQL(f *testing.F) {
	for _, s := range []string{
		"", u1 + ":1-5", u1 + ":1-5:7," + u2 + ":1-3", u1 + ":tag:1-5", u1 + ":1-3:11:47-49:tag1:1-5:tag2:3",
		u1 + ":1-5,\n" + u2 + ":1-3", u1 + ":0", u1 + ":5-3", u1 + ":tag", u1 + ":9223372036854775807", u1,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { fuzzRoundTrip(t, FlavorMySQL, s) })
}

func FuzzParseGTIDSetMariaDB(f *testing.F) {
	for _, s := range []string{
		"", "0-1-100", "0-1-100,1-11-42", "0-2-5,0-1-9", " 0-1-1 ,2-2-2", "0-1", "a-b-c", "0-1-18446744073709551615",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { fuzzRoundTrip(t, FlavorMariaDB, s) })
}
