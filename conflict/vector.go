package conflict

import (
	"fmt"
	"slices"
	"strings"
)

// NodeID is the short, 64-bit form of a node's identity used inside version
// vectors: the first 8 bytes of the full node ID, big-endian. Vectors are
// stored with every file record, so they must stay small.
type NodeID uint64

// Counter is one node's entry in a version vector.
type Counter struct {
	Node  NodeID
	Value uint64
}

// Vector is a version vector: for every node that changed a file, how many
// of that file's changes it made. Counters are kept sorted by Node and never
// hold a zero Value, so equal vectors have equal representations.
//
// A Vector is a value: methods never modify their receiver, they return a
// new Vector.
type Vector []Counter

// Ordering is the causal relation between two vectors.
type Ordering int

const (
	Equal      Ordering = iota // the same history
	Less                       // a happened before b: b supersedes a
	Greater                    // b happened before a: a supersedes b
	Concurrent                 // neither saw the other: a conflict
)

func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Less:
		return "less"
	case Greater:
		return "greater"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

// Get returns node's counter, zero when absent.
func (v Vector) Get(node NodeID) uint64 {
	i, ok := slices.BinarySearchFunc(v, node, func(c Counter, n NodeID) int { return cmpNode(c.Node, n) })
	if !ok {
		return 0
	}
	return v[i].Value
}

// Update returns v with node's counter raised to one more than the highest
// counter in v. Using the maximum rather than node's own previous value keeps
// the counters monotonic even when a node lost its index and forgot its own
// history; it changes no ordering relation.
func (v Vector) Update(node NodeID) Vector {
	var hi uint64
	for _, c := range v {
		hi = max(hi, c.Value)
	}
	return v.set(node, hi+1)
}

func (v Vector) set(node NodeID, value uint64) Vector {
	out := slices.Clone(v)
	i, ok := slices.BinarySearchFunc(out, node, func(c Counter, n NodeID) int { return cmpNode(c.Node, n) })
	if ok {
		out[i].Value = value
		return out
	}
	return slices.Insert(out, i, Counter{Node: node, Value: value})
}

// Merge returns the element-wise maximum of v and w: a vector that has seen
// both histories.
func (v Vector) Merge(w Vector) Vector {
	out := make(Vector, 0, max(len(v), len(w)))
	i, j := 0, 0
	for i < len(v) || j < len(w) {
		switch {
		case j == len(w) || (i < len(v) && v[i].Node < w[j].Node):
			out = append(out, v[i])
			i++
		case i == len(v) || w[j].Node < v[i].Node:
			out = append(out, w[j])
			j++
		default:
			out = append(out, Counter{Node: v[i].Node, Value: max(v[i].Value, w[j].Value)})
			i++
			j++
		}
	}
	return out
}

// Compare returns the causal relation of v to w.
func (v Vector) Compare(w Vector) Ordering {
	less, greater := false, false
	i, j := 0, 0
	for i < len(v) || j < len(w) {
		var a, b uint64
		switch {
		case j == len(w) || (i < len(v) && v[i].Node < w[j].Node):
			a = v[i].Value
			i++
		case i == len(v) || w[j].Node < v[i].Node:
			b = w[j].Value
			j++
		default:
			a, b = v[i].Value, w[j].Value
			i++
			j++
		}
		if a < b {
			less = true
		} else if a > b {
			greater = true
		}
	}
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Less
	case greater:
		return Greater
	}
	return Equal
}

// Valid reports whether v is in canonical form: sorted by node, no duplicate
// nodes and no zero counters. Decoders of untrusted bytes must check it.
func (v Vector) Valid() bool {
	for i, c := range v {
		if c.Value == 0 || (i > 0 && v[i-1].Node >= c.Node) {
			return false
		}
	}
	return true
}

// String formats v as "{node:value, ...}" with nodes in hex, for logs and tests.
func (v Vector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range v {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%016x:%d", uint64(c.Node), c.Value)
	}
	b.WriteByte('}')
	return b.String()
}

func cmpNode(a, b NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
