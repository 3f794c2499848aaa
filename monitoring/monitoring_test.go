package monitoring

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keepraft/keepraft/testenv"
)

// builtins are the series Prometheus itself provides.
var builtins = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// catalogue reads metrics.txt: name → type.
func catalogue(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fs := strings.Fields(text)
		if len(fs) != 3 {
			t.Fatalf("metrics.txt:%d: want \"name type scope\", got %q", line, text)
		}
		out[fs[0]] = fs[1]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("metrics.txt lists no series")
	}
	return out
}

// known reports whether name is a catalogued series, a histogram's _bucket, _sum or
// _count series, or a Prometheus builtin.
func known(cat map[string]string, name string) bool {
	if _, ok := cat[name]; ok || builtins[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && cat[base] == "histogram" {
			return true
		}
	}
	return false
}

var (
	promStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrafana  = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true}
	labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
)

// metricNames lists the series names a PromQL expression (or a Grafana label_values
// query) reads: identifiers outside strings, label matchers, ranges and grouping
// clauses that are neither functions nor keywords.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	} else if strings.HasPrefix(strings.TrimSpace(expr), "label_values(") {
		return nil // label_values(label) reads no named series
	}
	for _, re := range []*regexp.Regexp{promStrings, promGrafana, promMatchers, promRanges, promGrouping} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range promIdent.FindAllStringIndex(expr, -1) {
		name := expr[m[0]:m[1]]
		if m[0] > 0 && strings.ContainsRune("0123456789.", rune(expr[m[0]-1])) {
			continue // a number's exponent or a duration's unit
		}
		call := strings.HasPrefix(strings.TrimLeft(expr[m[1]:], " \t\n"), "(")
		if call || promKeywords[strings.ToLower(name)] || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up{job="keepraft"} == 0`, []string{"up"}},
		{`(count(a == 1 and on(node) b == 0) or vector(0)) == 0`, []string{"a", "b"}},
		{`max by (member) (x_total{reason!="initial"}) == 1`, []string{"x_total"}},
		{`histogram_quantile(0.95, sum by (node, le) (rate(h_bucket{node=~"$node"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`a * b == 0 unless on(node) label_replace(max by (member) (c) == 1, "node", "$1", "member", "(.*)")`, []string{"a", "b", "c"}},
		{`increase(w_total[10m]) > 0 offset 5m`, []string{"w_total"}},
		{`sum(rate(x[5m])) without (instance) / ignoring(node) group_left(peer) y`, []string{"x", "y"}},
		{`1e3 * z > 0.5`, []string{"z"}},
		{`ALERTS{alertname=~"Keepraft.*", alertstate="firing"}`, []string{"ALERTS"}},
		{`label_values(k_info, node)`, []string{"k_info"}},
		{`label_values(node)`, nil},
		{`${datasource_var} + q`, []string{"q"}},
	}
	for _, tt := range tests {
		if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// rule is one alerting rule of alerts.yml.
type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
	return out
}

// TestAlertRules checks what promtool does not: every alert has a severity and a
// summary and description, reads only catalogued series, and has a promtool case that
// fires and one that does not.
func TestAlertRules(t *testing.T) {
	cat := catalogue(t)
	b, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			Alerts []struct {
				Name string `yaml:"alertname"`
				Exp  []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.Alerts {
			if len(a.Exp) > 0 {
				fires[a.Name] = true
			} else {
				quiet[a.Name] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s is defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
		names := metricNames(r.Expr)
		if len(names) == 0 {
			t.Errorf("alert %s: no series found in %q", r.Alert, r.Expr)
		}
		for _, n := range names {
			if !known(cat, n) {
				t.Errorf("alert %s reads %s, which keepraftd does not export (monitoring/metrics.txt)", r.Alert, n)
			}
		}
		if !fires[r.Alert] || !quiet[r.Alert] {
			t.Errorf("alert %s: alerts_test.yml needs a case where it fires (%v) and one where it does not (%v)", r.Alert, fires[r.Alert], quiet[r.Alert])
		}
	}
	for name := range fires {
		if !seen[name] {
			t.Errorf("alerts_test.yml tests %s, which alerts.yml does not define", name)
		}
	}
}

// exprs collects every "expr" string of a dashboard and the "query" of its query
// variables.
func exprs(v any, key string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if typ, ok := x["type"].(string); ok && key == "templating" && typ != "query" {
			return // a datasource or custom variable: its query is no PromQL
		}
		for k, e := range x {
			switch s, ok := e.(string); {
			case ok && (k == "expr" || (key == "templating" && k == "query")):
				*out = append(*out, s)
			default:
				next := key
				if k == "templating" {
					next = k
				}
				exprs(e, next, out)
			}
		}
	case []any:
		for _, e := range x {
			exprs(e, key, out)
		}
	}
}

// TestDashboard holds dashboard.json to the catalogue: it is valid JSON, every query
// reads only exported series, and every exported series has a panel.
func TestDashboard(t *testing.T) {
	cat := catalogue(t)
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d["title"] == nil || d["uid"] == nil {
		t.Errorf("dashboard.json has no title or uid")
	}
	var qs []string
	exprs(d, "", &qs)
	if len(qs) == 0 {
		t.Fatal("dashboard.json has no queries")
	}
	used := map[string]bool{}
	for _, q := range qs {
		for _, n := range metricNames(q) {
			used[n] = true
			if !known(cat, n) {
				t.Errorf("dashboard query %q reads %s, which keepraftd does not export (monitoring/metrics.txt)", q, n)
			}
		}
	}
	for name, typ := range cat {
		if typ == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				used[name] = used[name] || used[name+s]
			}
		}
		if !used[name] {
			t.Errorf("%s has no panel in dashboard.json", name)
		}
	}
	ids := map[float64]bool{}
	var walk func(ps []any)
	walk = func(ps []any) {
		for _, p := range ps {
			pm, _ := p.(map[string]any)
			id, ok := pm["id"].(float64)
			if !ok || ids[id] {
				t.Errorf("panel %v: missing or duplicate id", pm["title"])
			}
			ids[id] = true
			if sub, ok := pm["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	ps, _ := d["panels"].([]any)
	walk(ps)
}

// TestPromtool runs promtool on the rules and their unit tests. promtool comes from
// Debian's prometheus package (make deps). Without it the test skips, unless
// KEEPRAFT_INTEG=1, where a missing promtool fails it.
func TestPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(testenv.IntegEnv) == "1" {
			t.Fatalf("%s=1 but promtool is missing (apt-get install prometheus): %v", testenv.IntegEnv, err)
		}
		t.Skipf("promtool not installed (apt-get install prometheus; %s=1 makes this a failure): %v", testenv.IntegEnv, err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
