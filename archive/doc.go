// Package archive is the write-once segment-file engine behind Buzzer's audit
// trail. It owns the on-disk format, the appending writer (framing, the
// SHA-256 hash chain, fsync, sealing a full segment with an Ed25519-signed
// trailer and making it read-only), crash recovery (truncating a torn tail,
// never a complete record), de-duplication by record id and per-key
// high-water mark, and the verifier that names the first bad byte range.
//
// The segment engine knows nothing about what a record means: the caller
// supplies Identify to read a record's id, ordering key and sequence. For
// audit records (audit.go) it implements package audit's interfaces: a
// Writer is an audit.Log, Opener an audit.LogOpener, Records the
// audit.Records that audit.Replay reads, and VerifyRecords is `buzzer audit
// verify`; archive imports audit, never the other way round. It must
// never rewrite, reorder or delete a complete record, never write a sealed
// segment again, and never acknowledge anything itself: durability is
// reported by Writer.Sync returning nil, and only then may a caller tell its
// upstream that the records are safe.
//
// # On-disk format (version 1, all integers big-endian)
//
// A directory holds segment files named %016d.seg (the segment index,
// starting at 0 and consecutive), an optional derived de-duplication
// checkpoint (dedup.ckpt, rebuilt by scanning when absent or damaged) and
// nothing else the archive reads.
//
// Segment header, 60 bytes:
//
//	0   8  magic "BZARCHV1"
//	8   8  segment index
//	16  32 chain head before this segment (hash of the previous segment's
//	       last record; zero for segment 0 or while no record exists yet)
//	48  8  number of records in all earlier segments
//	56  4  CRC-32C (Castagnoli) of bytes 0..55
//
// Then frames, back to back:
//
//	0   1  kind: 'R' record or 'S' seal
//	1   4  body length n
//	5   32 prev: the hash of the record before this one (for 'S': of the
//	       segment's last record, i.e. the chain head)
//	37  n  body (for 'R' the caller's record bytes)
//	37+n 4 CRC-32C of bytes 0..37+n-1 of the frame
//
// The hash of a record is SHA-256 over its frame without the CRC (kind,
// length, prev and body), so each record commits to the whole history before
// it, across segment boundaries.
//
// A seal frame is the last frame of a full segment. Its 112-byte body is the
// segment index (8), its record count (8), the SHA-256 of every byte of the
// file before the seal frame (32) and an Ed25519 signature (64) over
//
//	"buzzer-audit-seal-v1" || index || count || chain head || file hash
//
// After the seal is written the file is fsynced and chmod 0444. Segment and
// checkpoint creation and renames fsync the directory.
//
// Recovery (Open) treats as a torn write only an unreadable frame at the end
// of the newest segment with no complete frame after it, and cuts it; that
// includes a newest record damaged in place, which no reader could use
// anyway. Anything else wrong makes Open refuse, leaving the files as they
// are for an operator and for audit verify. After a failed write or fsync
// the Writer is discarded and the archive reopened; on Linux a failed fsync
// may already have dropped the unwritten pages, so records the reopened
// writer finds are trusted as the page cache shows them.
//
// What the chain cannot show: records after the last seal may be cut off
// whole at the tail without a trace in the archive itself (there is nothing
// after them to disagree). Sealed segments, and any removal or change before
// the last record, are detected.
package archive
