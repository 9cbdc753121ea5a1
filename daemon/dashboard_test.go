package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// exportedMetrics returns the names of the metrics a node with one folder
// and one (unreachable) peer exports, from the real collector.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	cfg, _ := newPeeredNode(t, "quorum")
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range families {
		names[mf.GetName()] = true
	}
	return names
}

// TestGrafanaDashboard checks that docs/ops/grafana-dashboard.json is an
// importable dashboard and that every metric its queries use is one the
// daemon exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../docs/ops/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		SchemaVersion int    `json:"schemaVersion"`
		UID           string `json:"uid"`
		Title         string `json:"title"`
		Panels        []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query struct {
					Query string `json:"query"`
				} `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.SchemaVersion == 0 || dash.UID == "" || dash.Title == "" {
		t.Errorf("schemaVersion %d, uid %q, title %q: all must be set", dash.SchemaVersion, dash.UID, dash.Title)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" || dash.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v, want one prometheus datasource input DS_PROMETHEUS", dash.Inputs)
	}

	exported := exportedMetrics(t)
	metric := regexp.MustCompile(`\blockstep_[a-z0-9_]+`)
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, name := range metric.FindAllString(expr, -1) {
			used[name] = true
			if !exported[name] {
				t.Errorf("%s uses %s, which the daemon does not export", where, name)
			}
		}
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q does not use the ${DS_PROMETHEUS} datasource", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if len(metric.FindAllString(tg.Expr, -1)) == 0 {
				t.Errorf("panel %q: query %q uses no lockstep metric", p.Title, tg.Expr)
			}
			check(fmt.Sprintf("panel %q", p.Title), tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		check(fmt.Sprintf("variable %q", v.Name), v.Query.Query)
	}
	for _, want := range []string{
		"lockstep_peer_lag_seconds", "lockstep_peer_pending_files", "lockstep_peer_pending_bytes",
		"lockstep_peer_sent_bytes_total", "lockstep_peer_received_bytes_total", "lockstep_chunks_total",
		"lockstep_conflicts_total", "lockstep_scan_errors_total", "lockstep_watch_errors_total",
		"lockstep_watch_overflows_total", "lockstep_folder_state",
	} {
		if !used[want] {
			t.Errorf("the dashboard has no panel for %s", want)
		}
	}
}
