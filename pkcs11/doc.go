// Package pkcs11 signs RNG log checkpoints with an Ed25519 key held in a
// PKCS#11 token (a hardware security module, or SoftHSM2 in tests): Signer is
// an rng.Signer whose private key never leaves the token.
//
// It needs cgo and is built only with the build tag "pkcs11"
// (go build -tags pkcs11); without the tag the package is empty, so the rest
// of Buzzer builds without a C toolchain. It must never export, log or cache
// the private key or the token PIN, and never sign anything but what the rng
// package hands it.
package pkcs11
