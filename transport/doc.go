// Package transport connects lockstep nodes: QUIC over one UDP socket, TLS
// 1.3 with both sides presenting self-signed certificates, and peers
// authenticated by the node IDs pinned in the configuration — nothing else.
//
// One Transport runs per node (Run). It listens, dials every configured
// peer that has an address, reconnects with capped, jittered exponential
// backoff, and hands each established connection to Config.Handler, which
// runs for as long as the connection lives.
//
// On a connection, each side opens one unidirectional control stream and
// sends its control messages (Hello, IndexUpdate, Confirm, Error) there, in
// order. Chunk requests travel on bidirectional request streams, one
// request at a time per stream, so a slow chunk never holds up the control
// stream or other chunks. A request stream answers its requests in order
// and is kept for the next request once a response has been read whole
// (protocol version 2; version 1 opened a stream per request), which saves
// opening, accepting and closing a stream per chunk. A requester has at
// most as many request streams as requests in flight, and cancels a
// stream whose request it gives up; a server serves each stream until the
// requester ends or cancels it.
//
// Invariants:
//   - A connection exists only with a pinned peer: the listener accepts only
//     certificates whose node ID is configured, the dialer only the ID it
//     dialed. Every refusal is logged once with the remote address and the
//     ID presented. The protocol version is the ALPN name; a mismatch fails
//     the handshake with a version error.
//   - At most one connection per peer. When both nodes dial at once, both
//     keep the connection dialed by the node with the smaller ID; a newer
//     connection from the same dialer replaces an older one (the peer
//     restarted).
//   - Nothing grows without bound on behalf of a peer: outgoing control
//     messages and incoming ones wait in small bounded queues that push back
//     through QUIC flow control; chunk requests in flight and served are
//     capped per connection; every request has a deadline; every stream is
//     read to its end or cancelled, so stream credit always returns (a
//     request stream kept for reuse counts against the same caps).
//   - Received chunk data is accepted only when it has the requested length
//     and BLAKE3 hash; compressed data is decompressed into at most the
//     requested length.
//   - Run returns only after every goroutine it started has exited.
//
// Chunk data is compressed with zstd by the serving node when it pays
// (Config.Compression, CompressAuto by default): when zstd shrinks it below
// 95% and the link time saved exceeds the CPU time spent. The link's rate
// comes from QUIC's congestion window and round-trip time, the CPU cost
// from the compression speed measured so far; a sample of each large chunk
// is tried before the whole. On a fast LAN with modest CPUs this sends
// chunks raw, on slower links compressible chunks go compressed.
//
// Optional behaviour follows the Hello messages (Features): a Conn learns
// the peer's offered features from the peer's Hello as it passes and uses
// each toward that peer only when offered. Index updates and confirmations
// then go compressed (protocol.FeatureCompressed), always worth it for
// these lists of similar entries, and chunk responses leave out the echoed
// hash (protocol.FeatureBareChunkResponse). Toward a peer that offers
// protocol.FeatureChunkBatch, RequestChunks asks for many chunks in one
// request (RequestChunksInto hands each to the caller as it arrives,
// received into the caller's buffer); every chunk is still verified on its
// own. A peer that offers
// none of these gets the plain frames of before.
//
// Each Conn counts the bytes it moves (Stats): on the streams as sent and
// with chunk data and control messages at their uncompressed length, chunks and their bytes, and
// QUIC's packet bytes, for metrics and for tests that check what was sent.
package transport
