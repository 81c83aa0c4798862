package archive

import (
	"testing"

	"github.com/buzzer-bet/buzzer/audit"
)

// The archiver's defaults (package audit) are the archive's, and its record
// size limit is the one readers use.
func TestAuditDefaultsAreTheArchives(t *testing.T) {
	c := audit.DefaultConfig("/x")
	if c.SegmentBytes != DefaultSegmentBytes || c.SegmentRecords != DefaultSegmentRecords ||
		c.MaxRecordBytes != DefaultMaxRecordBytes || c.RecentIDs != DefaultRecentIDs ||
		audit.MaxRecordBytesLimit != MaxRecordBytesLimit {
		t.Fatalf("audit defaults %+v differ from the archive's", c)
	}
}
