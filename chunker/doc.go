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
//   - Every chunk but the last of an input is longer than Params.Min bytes;
//     no chunk is longer than Params.Max. The chunks concatenate to the
//     input; empty input has no chunks.
//
// An edit that replaces more than a chunk's worth of bytes leaves the
// chunker at an arbitrary position relative to the old cut points; they fall
// back in step after one chunk about half the time and after two on average
// (TestResync), the price of the narrow size spread that normalized chunking
// buys.
//
// A Chunker reads, cuts and hashes on the calling goroutine, reusing one
// buffer and one hasher; one Chunker per goroutine hashes many files at
// once. SplitParallel reads, cuts and hashes one large input on separate
// goroutines, with a bounded number of buffers. The package does no file or
// network I/O; it reads an io.Reader.
package chunker
