package probe

import (
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestDSN(t *testing.T) {
	dsn := DSN("198.18.0.1", 3307, "kr", "p@ss:w/rd", 750*time.Millisecond)
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("ParseDSN(%q): %v", dsn, err)
	}
	if c.Addr != "198.18.0.1:3307" || c.User != "kr" || c.Passwd != "p@ss:w/rd" || c.Net != "tcp" {
		t.Errorf("parsed %+v", c)
	}
	if c.Timeout != 750*time.Millisecond || c.WriteTimeout != 750*time.Millisecond || c.ReadTimeout != 0 {
		t.Errorf("timeouts dial=%v write=%v read=%v", c.Timeout, c.WriteTimeout, c.ReadTimeout)
	}
	if !c.InterpolateParams || !c.ParseTime {
		t.Errorf("interpolateParams=%v parseTime=%v", c.InterpolateParams, c.ParseTime)
	}
	if v6 := DSN("::1", 3306, "u", "p", time.Second); !strings.Contains(v6, "tcp([::1]:3306)") {
		t.Errorf("IPv6 DSN %q", v6)
	}
}

func TestGrantsQuoting(t *testing.T) {
	for _, f := range []Flavor{FlavorMariaDB, FlavorMySQL} {
		for _, g := range Grants(f, "o'brien", "10.%") {
			if !strings.HasSuffix(g, ` TO 'o''brien'@'10.%'`) {
				t.Errorf("%s: %q", f, g)
			}
		}
	}
}
