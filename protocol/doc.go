// Package protocol is the wire format two lockstep nodes speak: framing, the
// message types and their binary codec. It does no I/O of its own beyond the
// io.Reader and io.Writer it is handed, so it is tested over net.Pipe and
// fuzzed directly; QUIC, TLS and the compression of chunk data live in
// package transport.
//
// A frame is a 5-byte header — message type (1 byte) and payload length
// (4 bytes, big-endian) — followed by the payload. Integers in payloads are
// unsigned varints unless noted, strings and vectors are length-prefixed, and
// a ChunkResponse ends with its data so that a writer can send the bytes it
// was given without copying them.
//
// Invariants:
//   - Decoding never panics and never allocates more than the frame it was
//     given could describe: every count is checked against the bytes left,
//     every length against a constant bound (MaxPayload, MaxPathLen,
//     MaxChunkSize, ...), before anything is allocated. A Compressed frame
//     may make it allocate its declared plain length, at most 128 times
//     the compressed bytes and never beyond the reader's payload limit.
//   - A decoded message is valid: paths are relative, slash-separated and
//     clean; version vectors satisfy conflict.Vector.Valid; a file's chunk
//     lengths add up to its size; an index batch's sequences increase inside
//     its declared range. Encoding refuses what decoding would refuse, so a
//     node never sends a frame its peer must reject.
//   - Unknown message types, unknown flag bits and trailing bytes are errors.
//     Compatibility is negotiated up front instead: the protocol version is
//     part of the TLS ALPN name (see ALPN), and optional behaviour is offered
//     in Hello.Features.
//   - Errors that cross the wire carry a stable numeric Code.
//
// Chunk-list differences: a node that offers FeatureChunkDelta in its Hello
// accepts a FileInfo whose chunk list is written as a difference (flag bit 1
// of the FileInfo encoding, FileInfo.Delta) from the list last announced for
// the same path on the same connection and folder. Both sides keep those
// lists in a DeltaWindow under the same bounds, so the sender knows which
// bases the receiver holds; the base is also named by its manifest hash,
// and a receiver that does not hold it refuses the update.
//
// Compressed control messages: to a node that offers FeatureCompressed, an
// IndexUpdate or Confirm may travel as a Compressed frame (TypeCompressed,
// see CompressFrame), its plain payload compressed with zstd. The frame
// declares the plain length, which the reader checks against its payload
// limit and against the compressed size (at most maxInflation times it)
// before allocating, and the decompressor may not write past it.
//
// Bare chunk responses: to a node that offers FeatureBareChunkResponse, a
// ChunkResponse may leave out the hash it answers for
// (TypeBareChunkResponse); the request ID names the request, and the
// requester verifies the data against the hash it asked for.
//
// Chunk batches: a node that offers FeatureChunkBatch answers a
// ChunkBatchRequest (TypeChunkBatchRequest; at most MaxBatchChunks chunks,
// MaxBatchBytes in all) on a request stream with one ChunkResponse per
// chunk, in order, each carrying the batch's ID. A chunk it cannot serve
// gets its error code and the others are still answered.
package protocol
