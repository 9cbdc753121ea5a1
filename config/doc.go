// Package config reads lockstep's TOML configuration file and checks it
// completely before anything runs: a Config returned by Load or Parse has
// every default filled in, every path absolute, every name unique and every
// reference resolved, so the rest of the daemon never re-checks it.
//
// # Keys
//
// The accepted keys are exactly these (TOML keys are case-sensitive; any
// other key is an error):
//
//	[node]
//	name      required; this node's name, unique in the cluster
//	data_dir  required; identity, index and conflict store
//	listen    UDP host:port for QUIC                 default "0.0.0.0:7400"
//	control   unix socket path of the control API    default <data_dir>/control.sock
//	metrics   TCP host:port for /metrics, /healthz   default "" (off)
//
//	[[peers]]  (any number)
//	name      required; unique, and not node.name
//	id        required; the peer's node ID, unique
//	address   required; host:port to reach the peer
//
//	[[folders]]  (any number)
//	id        required; unique; the same on every node sharing the folder
//	path      required; an existing directory, not overlapping another
//	          folder or the data dir
//	mode      "async" or "quorum"                    default "async"
//	quorum    nodes, this one included, that must hold
//	          a change before it commits, 1..nodes   default a majority,
//	                                                 nodes/2+1
//	          (checked in async mode too, but used only in quorum mode)
//	peers     names from [[peers]] sharing it        default every peer
//	ignore    gitignore-style patterns, relative to path
//	owner     owner of files lockstep writes         default: the sender's
//	group     group of files lockstep writes           numeric ids, as root
//	settle    quiet time before a change is announced      default "50ms"
//	rescan    safety rescan interval, "0" disables         default "1h"
//	tombstone_retention  how long a confirmed deletion is
//	          remembered                                   default "720h"
//	delete_guard      share (0..1) of a folder's files whose deletion in
//	          one scan pauses the folder instead of propagating;
//	          0 disables the guard                         default 0.5
//	delete_guard_min  the guard trips only from this many
//	          deletions on                                 default 100
//
// Durations are Go duration strings ("50ms", "10s", "1h"; no days). A
// folder's nodes are this node and its peers. The delete guard is on top of
// the check that always pauses a folder whose directory is missing or
// unmounted.
//
// # Names
//
// node.name, peer names and folder ids are 1 to 64 letters, digits, '.',
// '_' or '-', starting with a letter or digit: they appear in logs, status,
// URLs and file names under the data dir.
//
// # Paths
//
// A relative data_dir, control or folder path is relative to the directory
// holding the configuration file, never to the daemon's working directory.
// Paths are cleaned but symlinks in them are kept, so a deploy that swaps a
// symlinked docroot keeps working; overlap checks compare the paths with
// symlinks resolved.
//
// # Errors
//
// Every error is an *Error naming the file, the line and the key, in one
// line: "lockstep.toml:12: folders[2].quorum: 4 exceeds the folder's 3
// nodes". Array indexes in keys count from 0. Errors in the TOML itself
// and keys or values of the wrong type are reported first; among the
// checks after that, the error nearest the top of the file. Ignore
// patterns are kept as written; the package that matches them checks them.
package config
