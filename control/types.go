package control

import "time"

// Folder states, as shown in status.
const (
	StateScanning = "scanning"
	StateSyncing  = "syncing"
	StateIdle     = "idle"
	StatePaused   = "paused"
	StateError    = "error"
)

// Status is the answer to GET /v1/status and the output of
// `lockstep status --json`. Fields may be added; none may be removed or
// renamed.
type Status struct {
	Node    string         `json:"node"`
	ID      string         `json:"id"`
	Folders []FolderStatus `json:"folders"`
	// Traffic counts, per peer, the bytes exchanged since the daemon
	// started, across reconnections.
	Traffic []PeerTraffic `json:"traffic"`
}

// PeerTraffic is what this node exchanged with one peer.
type PeerTraffic struct {
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	// BytesSent and BytesReceived are stream bytes on the wire (chunk data
	// as compressed); ChunkBytesSent and ChunkBytesReceived count chunk
	// data uncompressed.
	BytesSent          uint64 `json:"bytes_sent"`
	BytesReceived      uint64 `json:"bytes_received"`
	ChunkBytesSent     uint64 `json:"chunk_bytes_sent"`
	ChunkBytesReceived uint64 `json:"chunk_bytes_received"`
}

// FolderStatus is one folder's state on this node.
type FolderStatus struct {
	ID    string `json:"id"`
	Path  string `json:"path"`
	Mode  string `json:"mode"`
	State string `json:"state"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
	Error string `json:"error"`
	// Warning is set when the folder works but degraded, for example
	// polling because the inotify watch limit was reached.
	Warning string `json:"warning,omitempty"`
	// Uncommitted counts, in a quorum folder, local versions that a quorum
	// does not hold yet.
	Uncommitted int64 `json:"uncommitted"`
	// Tombstones counts the deletions still remembered (see
	// tombstone_retention).
	Tombstones int64        `json:"tombstones"`
	Peers      []PeerStatus `json:"peers"`
	// Resync is the progress of a resync of the folder; absent when none
	// runs.
	Resync *ResyncStatus `json:"resync,omitempty"`
}

// ResyncStatus is how far a resync of a folder has come. Totals grow while
// the peers' indexes arrive.
type ResyncStatus struct {
	// Phase is "waiting for peers", "receiving" or "moving strays".
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
	// FilesTotal and BytesTotal count the cluster's versions announced so
	// far that needed work; FilesDone and BytesDone those applied.
	FilesTotal int64 `json:"files_total"`
	BytesTotal int64 `json:"bytes_total"`
	FilesDone  int64 `json:"files_done"`
	BytesDone  int64 `json:"bytes_done"`
	// FilesChecked and BytesChecked count local files hashed against the
	// cluster's version; FilesAdopted and BytesAdopted the local entries
	// found identical and kept without transfer.
	FilesChecked int64 `json:"files_checked"`
	BytesChecked int64 `json:"bytes_checked"`
	FilesAdopted int64 `json:"files_adopted"`
	BytesAdopted int64 `json:"bytes_adopted"`
	// BytesFetched is chunk data fetched from peers; BytesCopied chunk
	// data copied from local files.
	BytesFetched int64 `json:"bytes_fetched"`
	BytesCopied  int64 `json:"bytes_copied"`
	// SetAside counts local entries the cluster does not have, moved to
	// the conflict store.
	SetAside int64 `json:"set_aside"`
}

// ResyncRequest asks the daemon to resync a folder (every folder when
// Folder is empty).
type ResyncRequest struct {
	Folder string `json:"folder"`
}

// ResyncResponse names the folders whose resync started.
type ResyncResponse struct {
	Folders []string `json:"folders"`
}

// PeerStatus is what this node knows of one peer for one folder.
type PeerStatus struct {
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	// PendingFiles and PendingBytes count the file versions (deletions
	// included) this node holds that the peer has not confirmed holding.
	PendingFiles int64 `json:"pending_files"`
	PendingBytes int64 `json:"pending_bytes"`
	// LagSeconds is the age of the oldest pending version, 0 when none.
	LagSeconds float64 `json:"lag_seconds"`
	// LastSeen is when the peer was last heard from; zero if never.
	LastSeen time.Time `json:"last_seen"`
}

// Conflict is one version that lost a conflict, kept in the conflict store.
type Conflict struct {
	Folder string    `json:"folder"`
	Path   string    `json:"path"`
	Winner string    `json:"winner"` // node name (or ID when unknown) of the winning version's origin
	Loser  string    `json:"loser"`  // node name of the losing version's origin
	Time   time.Time `json:"time"`   // when this node resolved the conflict
	Copy   string    `json:"copy"`   // absolute path of the kept copy; empty when another node keeps it
}

// WaitRequest asks the daemon to block until the current local version of
// each path is committed.
type WaitRequest struct {
	Paths   []string `json:"paths"`   // absolute paths inside synced folders
	Timeout string   `json:"timeout"` // Go duration; empty means the server default
}

// WaitResponse answers a WaitRequest. Committed is true when every path is
// committed; otherwise Missing says, per path, what is still lacking.
type WaitResponse struct {
	Committed bool          `json:"committed"`
	Missing   []WaitMissing `json:"missing,omitempty"`
}

// WaitMissing names a path that is not committed yet and the peers that do
// not hold its current version.
type WaitMissing struct {
	Path   string   `json:"path"`
	Peers  []string `json:"peers,omitempty"`
	Reason string   `json:"reason"`
}

// ErrorBody is the JSON body of every non-2xx answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// ResumeRequest asks the daemon to re-check paused folders.
type ResumeRequest struct {
	Folder        string `json:"folder"` // empty: every folder
	AcceptDeletes bool   `json:"accept_deletes"`
}
