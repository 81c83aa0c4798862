//go:build pkcs11

package pkcs11

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	p11 "github.com/miekg/pkcs11"
	"golang.org/x/mod/sumdb/note"
)

// Mechanism and key type codes for Edwards-curve keys (PKCS#11 v3.0), which
// the binding does not name.
const (
	ckkECEdwards           = 0x00000040
	ckmECEdwardsKeyPairGen = 0x00001055
	ckmEdDSA               = 0x00001057
)

// ed25519OID is the DER encoding of the curve OID 1.3.101.112 (id-Ed25519),
// the CKA_EC_PARAMS value for Ed25519 keys.
var ed25519OID = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// Config locates a key in a token.
type Config struct {
	// Module is the path to the PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so. Required.
	Module string
	// TokenLabel selects the token. Required.
	TokenLabel string
	// PIN is the user PIN. Required.
	PIN string
	// KeyLabel is the CKA_LABEL of the key pair. Required.
	KeyLabel string
	// Name is the signed-note key name: the RNG log's origin. Required.
	Name string
}

func (c Config) validate() error {
	switch {
	case c.Module == "":
		return buzzer.Errorf(buzzer.EINVALID, "pkcs11: module path is required")
	case c.TokenLabel == "":
		return buzzer.Errorf(buzzer.EINVALID, "pkcs11: token label is required")
	case c.PIN == "":
		return buzzer.Errorf(buzzer.EINVALID, "pkcs11: PIN is required")
	case c.KeyLabel == "":
		return buzzer.Errorf(buzzer.EINVALID, "pkcs11: key label is required")
	case c.Name == "":
		return buzzer.Errorf(buzzer.EINVALID, "pkcs11: key name (log origin) is required")
	}
	return nil
}

// Signer is an rng.Signer backed by an Ed25519 private key in a PKCS#11
// token. It is safe for concurrent use (one session, serialized).
type Signer struct {
	ctx     *p11.Ctx
	module  string
	mu      sync.Mutex // guards session use: PKCS#11 sessions are not concurrent
	session p11.SessionHandle
	open    bool // session is open
	priv    p11.ObjectHandle
	pub     ed25519.PublicKey
	name    string
	hash    uint32
	vkey    string
}

var _ rng.Signer = (*Signer)(nil)

// Open logs in to the token and finds the key pair labelled cfg.KeyLabel.
func Open(cfg Config) (*Signer, error) {
	return open(cfg, false)
}

// GenerateKey creates an Ed25519 key pair labelled cfg.KeyLabel in the token
// (private key sensitive and not extractable) and returns a Signer for it. It
// refuses if a key with that label already exists.
func GenerateKey(cfg Config) (*Signer, error) {
	return open(cfg, true)
}

func open(cfg Config, generate bool) (_ *Signer, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, err := acquire(cfg.Module)
	if err != nil {
		return nil, err
	}
	s := &Signer{ctx: ctx, module: cfg.Module, name: cfg.Name}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	slot, err := findSlot(ctx, cfg.TokenLabel)
	if err != nil {
		return nil, err
	}
	if s.session, err = ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: opening a session failed")
	}
	s.open = true
	// Login is per application and token: another Signer in this process may
	// already have logged in, which is as good.
	if err := ctx.Login(s.session, p11.CKU_USER, cfg.PIN); err != nil && !isCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		return nil, buzzer.Wrap(err, buzzer.EFORBIDDEN, "pkcs11: login to token %q failed", cfg.TokenLabel)
	}
	existing, err := s.find(p11.CKO_PRIVATE_KEY, cfg.KeyLabel)
	if err != nil {
		return nil, err
	}
	var pubObj p11.ObjectHandle
	if generate {
		if len(existing) > 0 {
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "pkcs11: a key labelled %q already exists", cfg.KeyLabel)
		}
		pubObj, s.priv, err = ctx.GenerateKeyPair(s.session,
			[]*p11.Mechanism{p11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
			[]*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true),
				p11.NewAttribute(p11.CKA_VERIFY, true),
				p11.NewAttribute(p11.CKA_LABEL, cfg.KeyLabel),
				p11.NewAttribute(p11.CKA_EC_PARAMS, ed25519OID),
			},
			[]*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true),
				p11.NewAttribute(p11.CKA_PRIVATE, true),
				p11.NewAttribute(p11.CKA_SIGN, true),
				p11.NewAttribute(p11.CKA_SENSITIVE, true),
				p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
				p11.NewAttribute(p11.CKA_LABEL, cfg.KeyLabel),
			})
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: generating an Ed25519 key failed")
		}
	} else {
		if len(existing) != 1 {
			return nil, buzzer.Errorf(buzzer.ENOTFOUND, "pkcs11: want exactly one private key labelled %q, found %d", cfg.KeyLabel, len(existing))
		}
		s.priv = existing[0]
		pubs, err := s.find(p11.CKO_PUBLIC_KEY, cfg.KeyLabel)
		if err != nil {
			return nil, err
		}
		if len(pubs) != 1 {
			return nil, buzzer.Errorf(buzzer.ENOTFOUND, "pkcs11: want exactly one public key labelled %q, found %d", cfg.KeyLabel, len(pubs))
		}
		pubObj = pubs[0]
	}
	if s.pub, err = s.publicKey(pubObj); err != nil {
		return nil, err
	}
	if s.vkey, err = note.NewEd25519VerifierKey(cfg.Name, s.pub); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "pkcs11: %q is not a valid key name", cfg.Name)
	}
	v, err := note.NewVerifier(s.vkey)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "pkcs11: building the verifier failed")
	}
	s.hash = v.KeyHash()
	// Prove the pair matches before anyone relies on it.
	probe := []byte("buzzer pkcs11 key check\n")
	if _, err := s.Sign(probe); err != nil {
		return nil, err
	}
	return s, nil
}

func isCode(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}

func findSlot(ctx *p11.Ctx, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: listing slots failed")
	}
	for _, slot := range slots {
		info, err := ctx.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		if info.Label == label {
			return slot, nil
		}
	}
	return 0, buzzer.Errorf(buzzer.ENOTFOUND, "pkcs11: no token labelled %q", label)
}

func (s *Signer) find(class uint, label string) ([]p11.ObjectHandle, error) {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	if err := s.ctx.FindObjectsInit(s.session, tmpl); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: searching the token failed")
	}
	objs, _, err := s.ctx.FindObjects(s.session, 16)
	if ferr := s.ctx.FindObjectsFinal(s.session); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: searching the token failed")
	}
	return objs, nil
}

// publicKey reads CKA_EC_POINT: the 32-byte Ed25519 key, usually wrapped in
// a DER OCTET STRING (04 20 ...), which some tokens omit.
func (s *Signer) publicKey(obj p11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := s.ctx.GetAttributeValue(s.session, obj, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
		p11.NewAttribute(p11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: reading the public key failed")
	}
	var params, point []byte
	for _, a := range attrs {
		switch a.Type {
		case p11.CKA_EC_PARAMS:
			params = a.Value
		case p11.CKA_EC_POINT:
			point = a.Value
		}
	}
	if !bytes.Equal(params, ed25519OID) && !bytes.Equal(params, append([]byte{0x13, 0x0c}, "edwards25519"...)) {
		return nil, buzzer.Errorf(buzzer.EINVALID, "pkcs11: key is not on Ed25519 (params %x)", params)
	}
	switch {
	case len(point) == ed25519.PublicKeySize+2 && point[0] == 0x04 && point[1] == ed25519.PublicKeySize:
		point = point[2:]
	case len(point) == ed25519.PublicKeySize:
	default:
		return nil, buzzer.Errorf(buzzer.EINVALID, "pkcs11: unexpected Ed25519 public key encoding (%d bytes)", len(point))
	}
	return ed25519.PublicKey(bytes.Clone(point)), nil
}

// Name returns the note key name (the log origin).
func (s *Signer) Name() string { return s.name }

// KeyHash returns the note key hash.
func (s *Signer) KeyHash() uint32 { return s.hash }

// VerifierKey returns the public verifier key in signed-note format.
func (s *Signer) VerifierKey() string { return s.vkey }

// PublicKey returns the Ed25519 public key read from the token.
func (s *Signer) PublicKey() ed25519.PublicKey { return bytes.Clone(s.pub) }

// Sign signs msg in the token with pure EdDSA. The signature is checked
// against the exported public key before it is returned, so a faulty token
// cannot put a bad signature on a checkpoint.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "pkcs11: signer is closed")
	}
	if err := s.ctx.SignInit(s.session, []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}, s.priv); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: starting a signature failed")
	}
	sig, err := s.ctx.Sign(s.session, msg)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: signing failed")
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, buzzer.Wrap(fmt.Errorf("signature does not verify"), buzzer.EINTERNAL, "pkcs11: the token returned a bad signature")
	}
	return sig, nil
}

// Close logs out and releases the module.
func (s *Signer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil
	}
	if s.open {
		// No C_Logout: it would end the login of every session of this
		// process; the login ends when the last session closes.
		s.ctx.CloseSession(s.session)
	}
	release(s.module)
	s.ctx = nil
	return nil
}

// A PKCS#11 module is initialised once per process (C_Initialize is global to
// the loaded library), so Signers share one context per module path and the
// last one to close finalises it. This is the only package-level state, and
// it mirrors state the C library already keeps.
var modules = struct {
	sync.Mutex
	m map[string]*moduleRef
}{m: map[string]*moduleRef{}}

type moduleRef struct {
	ctx  *p11.Ctx
	refs int
}

func acquire(path string) (*p11.Ctx, error) {
	modules.Lock()
	defer modules.Unlock()
	if r, ok := modules.m[path]; ok {
		r.refs++
		return r.ctx, nil
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "pkcs11: cannot load module %s", path)
	}
	if err := ctx.Initialize(); err != nil {
		ctx.Destroy()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "pkcs11: initializing the module failed")
	}
	modules.m[path] = &moduleRef{ctx: ctx, refs: 1}
	return ctx, nil
}

func release(path string) {
	modules.Lock()
	defer modules.Unlock()
	r, ok := modules.m[path]
	if !ok {
		return
	}
	if r.refs--; r.refs == 0 {
		r.ctx.Finalize()
		r.ctx.Destroy()
		delete(modules.m, path)
	}
}
