package migrate

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"m/wallet/0002_more.sql":      {Data: []byte("two")},
		"m/wallet/0001_init.sql":      {Data: []byte("one")},
		"m/wallet/0001_init.crdb.sql": {Data: []byte("one-crdb")},
		"m/core/0001_meta.sql":        {Data: []byte("core")},
		"m/audit/0001_outbox.sql":     {Data: []byte("audit")},
		"m/audit/README.md":           {Data: []byte("ignored")},
	}
	for _, tt := range []struct {
		crdb bool
		want []string
	}{
		{false, []string{"core/0001_meta=core", "audit/0001_outbox=audit", "wallet/0001_init=one", "wallet/0002_more=two"}},
		{true, []string{"core/0001_meta=core", "audit/0001_outbox=audit", "wallet/0001_init=one-crdb", "wallet/0002_more=two"}},
	} {
		ms, err := Load(fsys, "m", tt.crdb)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.ID()+"="+m.SQL)
		}
		if len(got) != len(tt.want) {
			t.Fatalf("crdb=%v got %v", tt.crdb, got)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("crdb=%v got %v, want %v", tt.crdb, got, tt.want)
			}
		}
	}
}

func TestLoadRejects(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":          {"m/x/init.sql": {Data: []byte("x")}},
		"zero version":      {"m/x/0000_init.sql": {Data: []byte("x")}},
		"duplicate version": {"m/x/0001_a.sql": {Data: []byte("x")}, "m/x/0001_b.sql": {Data: []byte("y")}},
	} {
		if _, err := Load(fsys, "m", false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
