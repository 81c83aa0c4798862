// Package gateway is the edge gateway of the regulated path: it admits a
// player's request (per-IP and per-player token-bucket rate limits, a
// concurrency limit that sheds load at once instead of queueing, JWT
// authentication, a verified geolocation decision whose jurisdiction must be
// the account's), and proxies it to the edge of exactly that jurisdiction,
// named in a topology file. It owns the routing, the protection and the
// latency accounting (total and downstream time per route, so its own
// overhead is visible), and the signed decision it forwards to the edge.
//
// It must never send a request to an edge other than the one the verified
// location resolves to, never retry a regulated request elsewhere, and never
// let a request through when a compliance dependency or the edge cannot
// answer: every such case is a 503 with reason compliance_unavailable. It
// holds no regulated state and no business rules.
package gateway
