// Package replica is the replication engine of one synced folder: it turns
// local changes into index versions announced to peers, and peers'
// announcements into files on disk.
//
// Data path. A local change is recorded by the scanner as a new version
// (own vector counter + 1, a clock stamp, the next local sequence). Each
// peer session streams the folder's sequence log to the peer from the last
// sequence the peer said it received. A received announcement is decided by
// the conflict rule against the local record; what must change joins the
// pull queue. The puller assembles files from chunks found on this node
// (by hash, via the index's chunk locations) and chunks fetched from any
// peer that announced the version, writes them under a ".lockstep" temp
// name, flushes them (each with fsync for a small batch, a large one with
// one syncfs; see chooseFlush), renames them into place, flushes the
// renames, records them in the index (conditionally, so a local change
// made meanwhile is never overwritten) and then tells the peers how far
// their announcements are processed.
//
// Invariants:
//   - a peer's announcement counts as received (persisted cursor,
//     confirmation sent) only once every entry up to it is applied and
//     durable, or was found to need nothing (see watermark);
//   - a file is replaced only if the disk still matches the index record
//     the decision was made from; otherwise the local change is scanned and
//     the decision made again;
//   - the loser of a conflict that held content on this node is copied to
//     the conflict store, outside the folder, before it is replaced.
//
// The decisions — which version wins (package conflict), what to fetch
// from where (Plan), how far a peer's stream is done (watermark) — are pure
// and tested without disks or sockets; the Folder is the loop around them.
package replica
