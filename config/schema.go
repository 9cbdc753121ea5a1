package config

import (
	"reflect"
	"strings"
)

// The raw* types mirror the file exactly. Pointers tell a missing key from
// a zero value, so that defaults apply only to what the file leaves out.
// Their toml tags are the one list of accepted keys: the schema below is
// derived from them.
type rawConfig struct {
	Node    *rawNode    `toml:"node"`
	Peers   []rawPeer   `toml:"peers"`
	Folders []rawFolder `toml:"folders"`
}

type rawNode struct {
	Name    *string `toml:"name"`
	DataDir *string `toml:"data_dir"`
	Listen  *string `toml:"listen"`
	Control *string `toml:"control"`
	Metrics *string `toml:"metrics"`
}

type rawPeer struct {
	Name    *string `toml:"name"`
	ID      *string `toml:"id"`
	Address *string `toml:"address"`
}

type rawFolder struct {
	ID                 *string   `toml:"id"`
	Path               *string   `toml:"path"`
	Mode               *string   `toml:"mode"`
	Quorum             *int      `toml:"quorum"`
	Peers              *[]string `toml:"peers"`
	Ignore             []string  `toml:"ignore"`
	Owner              *string   `toml:"owner"`
	Group              *string   `toml:"group"`
	Settle             *string   `toml:"settle"`
	Rescan             *string   `toml:"rescan"`
	TombstoneRetention *string   `toml:"tombstone_retention"`
	DeleteGuard        *float64  `toml:"delete_guard"`
	DeleteGuardMin     *int      `toml:"delete_guard_min"`
}

// schema maps every accepted key pattern to the Go type it decodes into.
// A pattern is a key path without array indexes ("folders.quorum"); the
// elements of an array are "folders.peers[]".
var schema = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	addSchema(m, "", reflect.TypeFor[rawConfig]())
	return m
}()

func addSchema(m map[string]reflect.Type, prefix string, t reflect.Type) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		p := join(prefix, name)
		ft := deref(f.Type)
		m[p] = ft
		if ft.Kind() == reflect.Slice {
			ft = deref(ft.Elem())
			m[p+"[]"] = ft
		}
		if ft.Kind() == reflect.Struct {
			addSchema(m, p, ft)
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func join(prefix, part string) string {
	if prefix == "" {
		return part
	}
	return prefix + "." + part
}
