// Package control is the local API between the daemon and the lockstep
// command: HTTP with JSON bodies over a unix socket that only the daemon's
// user may open (mode 0600). The request and response types here are shared
// by server and client, so the two cannot drift apart; the JSON field names
// of Status are part of the user-facing contract (SPEC "Status JSON").
package control
