// Package chunker cuts a byte stream into content-defined chunks (FastCDC),
// hashes each chunk with BLAKE3-256, and describes a file as the ordered list
// of its chunks, its Manifest.
//
// Content-defined cut points depend only on the bytes around them, so an
// insertion or deletion changes the one or two chunks it touches and leaves
// the others, and their hashes, unchanged: a node sends a peer only the
// chunks it lacks. For that to work across nodes and versions:
//
//   - Cut points are a pure function of the input bytes and Params (Cut),
//     independent of how the input is read, of buffer sizes and of
//     parallelism. Chunker, Split and SplitParallel all produce the same
//     chunks for the same input.
//   - The Gear table and the cut rule are fixed forever: they are part of
//     the wire format. Golden tests pin them, and fail if either changes.
//   - Every chunk is at least Params.Min bytes, except a whole input shorter
//     than that, and at most Params.Max bytes. The chunks concatenate to the
//     input; empty input has no chunks.
//
// Cutting is on the calling goroutine. Hashing is the costly part:
// SplitParallel spreads one large input's chunks over worker goroutines with
// a bounded number of buffers, and a Chunker per goroutine hashes many files
// at once. The package does no file or network I/O; it reads an io.Reader.
package chunker
