//go:build !race

package chunker

// raceEnabled tells size-sensitive tests that the race detector slows every
// Go memory access (the cut loop about 17×; BLAKE3's assembly much less).
const raceEnabled = false
