package archive

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

const (
	headerSize   = 60
	frameOver    = 1 + 4 + 32 + 4 // kind, length, prev, crc
	sealBodySize = 8 + 8 + 32 + ed25519.SignatureSize
	sealFrame    = frameOver + sealBodySize

	kindRecord = 'R'
	kindSeal   = 'S'

	segmentSuffix = ".seg"
	ckptName      = "dedup.ckpt"
)

var (
	magic      = [8]byte{'B', 'Z', 'A', 'R', 'C', 'H', 'V', '1'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	sealDomain = []byte("buzzer-audit-seal-v1")
)

// Hash is a SHA-256 chain hash.
type Hash [32]byte

func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// header is a segment file's fixed header.
type header struct {
	Index  uint64
	Prev   Hash   // chain head before the segment
	Before uint64 // records in all earlier segments
}

func (h header) encode() []byte {
	b := make([]byte, headerSize)
	copy(b[0:8], magic[:])
	binary.BigEndian.PutUint64(b[8:16], h.Index)
	copy(b[16:48], h.Prev[:])
	binary.BigEndian.PutUint64(b[48:56], h.Before)
	binary.BigEndian.PutUint32(b[56:60], crc32.Checksum(b[:56], castagnoli))
	return b
}

func decodeHeader(b []byte) (header, string) {
	if len(b) < headerSize {
		return header{}, "segment header is truncated"
	}
	if [8]byte(b[0:8]) != magic {
		return header{}, "segment header has a bad magic number"
	}
	if crc32.Checksum(b[:56], castagnoli) != binary.BigEndian.Uint32(b[56:60]) {
		return header{}, "segment header checksum mismatch"
	}
	var h header
	h.Index = binary.BigEndian.Uint64(b[8:16])
	copy(h.Prev[:], b[16:48])
	h.Before = binary.BigEndian.Uint64(b[48:56])
	return h, ""
}

// appendFrame appends one frame to dst and returns it with the frame's
// chain hash (meaningful for record frames).
func appendFrame(dst []byte, kind byte, prev Hash, body []byte) ([]byte, Hash) {
	start := len(dst)
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, prev[:]...)
	dst = append(dst, body...)
	h := Hash(sha256.Sum256(dst[start:]))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	return dst, h
}

// frame is one decoded frame.
type frame struct {
	Kind byte
	Prev Hash
	Body []byte
	Hash Hash // chain hash of this frame
	Size int  // bytes on disk
}

// frameStatus says why a frame could not be decoded.
type frameStatus int

const (
	frameOK         frameStatus = iota
	frameIncomplete             // the bytes end before the frame does
	frameBad                    // the frame is complete but wrong
)

// decodeFrame decodes the frame at the start of b. maxBody bounds the body
// length a record frame may claim.
func decodeFrame(b []byte, maxBody int) (frame, frameStatus, string) {
	if len(b) < 5 {
		return frame{}, frameIncomplete, "frame header is truncated"
	}
	kind := b[0]
	if kind != kindRecord && kind != kindSeal {
		return frame{}, frameBad, fmt.Sprintf("frame has unknown kind 0x%02x", kind)
	}
	n := int64(binary.BigEndian.Uint32(b[1:5]))
	if kind == kindSeal && n != sealBodySize {
		return frame{}, frameBad, fmt.Sprintf("seal frame claims %d body bytes, want %d", n, sealBodySize)
	}
	if kind == kindRecord && (n == 0 || n > int64(maxBody)) {
		return frame{}, frameBad, fmt.Sprintf("record frame claims %d body bytes (limit %d)", n, maxBody)
	}
	total := int64(frameOver) + n
	if int64(len(b)) < total {
		return frame{}, frameIncomplete, "frame is truncated"
	}
	end := total - 4
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:total]) {
		return frame{}, frameBad, "frame checksum mismatch"
	}
	f := frame{Kind: kind, Body: b[37:end], Size: int(total)}
	copy(f.Prev[:], b[5:37])
	f.Hash = sha256.Sum256(b[:end])
	return f, frameOK, ""
}

// seal is the decoded body of a seal frame.
type seal struct {
	Index    uint64
	Count    uint64
	FileHash Hash
	Sig      []byte
}

func sealMessage(index, count uint64, head, fileHash Hash) []byte {
	m := make([]byte, 0, len(sealDomain)+8+8+32+32)
	m = append(m, sealDomain...)
	m = binary.BigEndian.AppendUint64(m, index)
	m = binary.BigEndian.AppendUint64(m, count)
	m = append(m, head[:]...)
	m = append(m, fileHash[:]...)
	return m
}

func encodeSeal(key ed25519.PrivateKey, index, count uint64, head, fileHash Hash) []byte {
	b := make([]byte, 0, sealBodySize)
	b = binary.BigEndian.AppendUint64(b, index)
	b = binary.BigEndian.AppendUint64(b, count)
	b = append(b, fileHash[:]...)
	return append(b, ed25519.Sign(key, sealMessage(index, count, head, fileHash))...)
}

func decodeSeal(body []byte) seal {
	var s seal
	s.Index = binary.BigEndian.Uint64(body[0:8])
	s.Count = binary.BigEndian.Uint64(body[8:16])
	copy(s.FileHash[:], body[16:48])
	s.Sig = body[48:]
	return s
}

func segmentName(index uint64) string { return fmt.Sprintf("%016d%s", index, segmentSuffix) }
