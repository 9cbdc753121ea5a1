// Package conflict decides, without any I/O, which of two versions of a path
// wins. Every node runs the same rule on the same inputs, so every node picks
// the same winner without talking to the others.
//
// Causality comes from version vectors: a version whose vector dominates
// another's supersedes it. Only concurrent versions — neither saw the
// other — are a conflict. Among those, a modification beats a deletion, then
// the later hybrid-logical-clock stamp wins, then the larger origin node ID,
// then the larger content digest, so the order is total. The winner keeps its
// own vector. Concurrent versions with the same content are not a conflict:
// the winner's metadata and vector are taken, and nothing is copied or
// transferred.
//
// The package holds no state beyond the Clock its owner drives and imports
// nothing that touches disks, sockets or the wall clock.
package conflict
