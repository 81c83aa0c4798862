// Package geo owns geolocation compliance: it verifies the signed
// geolocation tokens that a provider issues to a player's device, resolves
// the verified fix to a jurisdiction on real state boundaries, and returns
// the decision (allowed jurisdiction, or a typed denial) that the gateway
// enforces and stores with every bet and money movement it authorizes.
//
// Everything it depends on outside the process — the provider's keys, the
// self-exclusion/consent registry, the IP locator, the challenge store — is
// a small interface called with a bounded timeout. When one of them cannot
// answer and no valid cached decision exists, the answer is a denial with
// code unavailable and reason "compliance_unavailable": geo fails closed and
// has no switch that fails open.
//
// geo must never import an engine or a transport (no net/http, no SQL, no
// broker): the HTTP registry client lives in package georegistry and the
// MaxMind reader in package maxmind.
package geo
