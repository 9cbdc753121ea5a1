package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable numeric error code. Codes cross the wire in Error and
// ChunkResponse messages and as QUIC application and stream error codes, so
// their values never change; new codes are only added.
type Code uint32

const (
	CodeOK        Code = 0  // no error
	CodeProtocol  Code = 1  // malformed, unexpected or unknown message
	CodeVersion   Code = 2  // unsupported protocol version or feature
	CodeNotFound  Code = 3  // the chunk (or file) is not available here
	CodeInternal  Code = 4  // the peer failed to serve a request
	CodeShutdown  Code = 5  // the peer is shutting down
	CodeDuplicate Code = 6  // connection replaced by another one to the same peer
	CodeTooLarge  Code = 7  // a frame exceeds the size limit
	CodeTimeout   Code = 8  // a request took longer than its deadline
	CodeCanceled  Code = 9  // the requester no longer wants the answer
	CodeNoFolder  Code = 10 // the folder is not shared with the requester
	CodeBusy      Code = 11 // too many requests in flight; try another peer or later
	codeLimit     Code = 12 // first unassigned code
)

var codeNames = [...]string{
	CodeOK:        "ok",
	CodeProtocol:  "protocol error",
	CodeVersion:   "unsupported version",
	CodeNotFound:  "not found",
	CodeInternal:  "internal error",
	CodeShutdown:  "shutting down",
	CodeDuplicate: "duplicate connection",
	CodeTooLarge:  "frame too large",
	CodeTimeout:   "timeout",
	CodeCanceled:  "canceled",
	CodeNoFolder:  "folder not shared",
	CodeBusy:      "busy",
}

func (c Code) String() string {
	if c < codeLimit {
		return codeNames[c]
	}
	return fmt.Sprintf("error code %d", uint32(c))
}

// Error is both the Error message (sent and received as *Error) and the Go
// error for a coded failure. errors.Is matches Errors by Code alone, so a
// received &Error{CodeNotFound, "..."} is errors.Is(err, ErrNotFound).
type Error struct {
	Code    Code
	Message string // human-readable detail, at most MaxMessageLen bytes
}

func (e Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// Is matches any Error or *Error with the same Code.
func (e Error) Is(target error) bool {
	switch t := target.(type) {
	case Error:
		return t.Code == e.Code
	case *Error:
		return t != nil && t.Code == e.Code
	}
	return false
}

// Sentinels for errors.Is.
var (
	ErrProtocol  error = Error{Code: CodeProtocol}
	ErrVersion   error = Error{Code: CodeVersion}
	ErrNotFound  error = Error{Code: CodeNotFound}
	ErrInternal  error = Error{Code: CodeInternal}
	ErrShutdown  error = Error{Code: CodeShutdown}
	ErrDuplicate error = Error{Code: CodeDuplicate}
	ErrTooLarge  error = Error{Code: CodeTooLarge}
	ErrTimeout   error = Error{Code: CodeTimeout}
	ErrCanceled  error = Error{Code: CodeCanceled}
	ErrNoFolder  error = Error{Code: CodeNoFolder}
	ErrBusy      error = Error{Code: CodeBusy}
)

// CodeOf returns the code to send for err: the Code of the Error it wraps,
// CodeOK for nil and CodeInternal for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e Error
	if errors.As(err, &e) {
		return e.Code
	}
	var pe *Error
	if errors.As(err, &pe) && pe != nil {
		return pe.Code
	}
	return CodeInternal
}
