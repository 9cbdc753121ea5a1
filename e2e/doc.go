// Package e2e tests lockstep from the outside: it builds bin/lockstep once,
// runs real daemons on 127.0.0.1 in temporary directories, and drives them
// only through the command line, configuration files and the status JSON —
// the same surface a sysadmin and their scripts have.
//
// Environment:
//
//	LOCKSTEP_E2E_NORACE=1      build the daemon without -race (benchmarks need it)
//	LOCKSTEP_E2E_BINARY=PATH   use a binary built elsewhere instead of building
//	                           one (to compare two builds in one session)
//	LOCKSTEP_BENCH_SCALE=small shrink the end-to-end benchmarks
//	LOCKSTEP_BENCH_RSYNC=off   leave rsync out (comparing two builds)
//	LOCKSTEP_BENCH_PROFILE=DIR CPU profiles of the daemons during transfers
//	LOCKSTEP_BENCH_SLOW=1      log each propagation sample over 20 ms, with its time
//	LOCKSTEP_QUORUM_SAMPLES=N  writes timed by the quorum wait benchmark
//
// The initial-sync benchmarks also time a raw quic-go transfer between two
// processes of package transport's test binary, which they build
// (transport/rawproc_test.go).
package e2e
