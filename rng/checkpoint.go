package rng

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a commitment to the first Size records of a log: the C2SP
// tlog-checkpoint body (origin line, decimal tree size, base64 root hash).
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// maxCheckpointSize bounds a signed checkpoint note accepted for parsing.
const maxCheckpointSize = 16 << 10

// Body returns the checkpoint's C2SP tlog-checkpoint body (no extension lines).
func (c Checkpoint) Body() []byte {
	return []byte(c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Hash[:]) + "\n")
}

// ParseCheckpoint parses a C2SP tlog-checkpoint body. Extension lines after
// the root hash are allowed by the format and ignored here.
func ParseCheckpoint(body []byte) (Checkpoint, error) {
	bad := func(what string) (Checkpoint, error) {
		return Checkpoint{}, buzzer.Errorf(buzzer.EINVALID, "malformed checkpoint: %s", what)
	}
	if len(body) > maxCheckpointSize || !bytes.HasSuffix(body, []byte("\n")) {
		return bad("must end in a newline")
	}
	lines := strings.Split(string(body[:len(body)-1]), "\n")
	if len(lines) < 3 {
		return bad("need origin, size and root hash lines")
	}
	origin, size, hash := lines[0], lines[1], lines[2]
	if origin == "" || strings.ContainsAny(origin, "\x00\r") {
		return bad("bad origin line")
	}
	if size == "" || (len(size) > 1 && size[0] == '0') || strings.TrimLeft(size, "0123456789") != "" {
		return bad("tree size must be a decimal without leading zeros")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return bad("tree size out of range")
	}
	h, err := base64.StdEncoding.Strict().DecodeString(hash)
	if err != nil || len(h) != tlog.HashSize || base64.StdEncoding.EncodeToString(h) != hash {
		return bad("root hash must be 32 bytes in standard base64")
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return bad("empty extension line")
		}
	}
	c := Checkpoint{Origin: origin, Size: n}
	copy(c.Hash[:], h)
	return c, nil
}

// SignCheckpoint returns c as a signed note.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(c.Body())}, s)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "signing the checkpoint failed")
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint note against the one verifier
// the caller trusts, and parses it. Signatures by any other key are ignored;
// a note with no valid signature by v is rejected (EFORBIDDEN, reason
// "checkpoint_signature"). The origin line must equal the key's name.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if len(signed) > maxCheckpointSize {
		return Checkpoint{}, buzzer.Errorf(buzzer.EINVALID, "malformed checkpoint: too large")
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, buzzer.Wrap(err, buzzer.EFORBIDDEN, "checkpoint is not signed by the trusted key %s", v.Name()).WithReason("checkpoint_signature")
		}
		return Checkpoint{}, buzzer.Wrap(err, buzzer.EINVALID, "malformed signed checkpoint")
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, buzzer.Errorf(buzzer.EFORBIDDEN, "checkpoint origin %q does not match the trusted key %q", c.Origin, v.Name()).WithReason("checkpoint_signature")
	}
	return c, nil
}

// NewVerifier parses a verifier key in signed-note format
// ("name+hash+base64key") as printed by `buzzer rng key`.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "malformed verifier key")
	}
	return v, nil
}
