package conformance

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/csapi"
	"github.com/myelin-hs/myelin/impl/specversions"
	"github.com/myelin-hs/myelin/impl/ssapi"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// pendingOperations returns the operations still stubbed out in the
// adapters' pending*.go files (method name → file), read from the source
// at test time: they answer 501 M_UNRECOGNIZED until built.
func pendingOperations(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{"../impl/csapi", "../impl/ssapi"} {
		files, err := filepath.Glob(filepath.Join(dir, "pending*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, d := range parsed.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
					out[fd.Name.Name] = filepath.Join(filepath.Base(dir), filepath.Base(f))
				}
			}
		}
	}
	return out
}

// renderReport prints one row per spec operation: whether it is
// implemented or answered as unsupported (with the Matrix error), and its
// example cases per backend; the last line is "N passed, M failed".
func renderReport(ops []operation, pending map[string]string, results []caseResult) string {
	byOp := map[string][]caseResult{}
	backends := map[testenv.Backend]bool{}
	for _, r := range results {
		byOp[r.Op.ID()] = append(byOp[r.Op.ID()], r)
		backends[r.Backend] = true
	}
	var bs []string
	for b := range backends {
		bs = append(bs, string(b))
	}
	sort.Strings(bs)

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "METHOD\tPATH\tOPERATION\tSTATUS\tCASES (%s)\n", strings.Join(bs, ", "))
	counts := map[outcome]int{}
	var unsupportedOps []string
	for _, o := range ops {
		rs := byOp[o.ID()]
		status := "implemented"
		var notes []string
		var tally []string
		per := map[testenv.Backend]map[outcome]int{}
		for _, r := range rs {
			counts[r.Outcome]++
			if per[r.Backend] == nil {
				per[r.Backend] = map[outcome]int{}
			}
			per[r.Backend][r.Outcome]++
			switch r.Outcome {
			case unsupported:
				status = "unsupported: " + r.Note
			case failed:
				notes = append(notes, fmt.Sprintf("%s %d failed", r.Backend, r.Status))
			case skipped:
				if status == "implemented" {
					status = "untested: setup needs an operation not built yet"
				}
			}
		}
		if file, ok := pending[o.ID()]; ok && !strings.HasPrefix(status, "unsupported") {
			status = "unsupported: not built yet (" + file + ")"
		}
		if strings.HasPrefix(status, "unsupported") {
			unsupportedOps = append(unsupportedOps, o.ID())
		}
		for _, b := range bs {
			c := per[testenv.Backend(b)]
			tally = append(tally, fmt.Sprintf("%d/%d", c[passed], c[passed]+c[failed]))
		}
		line := strings.Join(tally, " ")
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Method, o.Path, o.ID(), status, line)
	}
	tw.Flush()
	fmt.Fprintf(&sb, "%d operations, %d unsupported; %d cases unsupported, %d skipped\n",
		len(ops), len(unsupportedOps), counts[unsupported], counts[skipped])
	fmt.Fprintf(&sb, "%d passed, %d failed\n", counts[passed], counts[failed])
	return sb.String()
}

// renderVersions prints the coverage table by spec version: every change
// the spec's annotations (and the changelog features of csapi.Features)
// give for an operation of the slice, with its state, and the versions
// /versions claims as a result.
func renderVersions() string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "VERSION\tOPERATION\tCHANGE\tSTATE\n")
	rows := append(csapi.CoverageRows(), ssapi.CoverageRows()...)
	sort.SliceStable(rows, func(i, j int) bool { return specversions.Less(rows[i].Version, rows[j].Version) })
	for _, r := range rows {
		v := r.Version
		if v == "" {
			v = "r0"
			if r.State == specversions.Served {
				continue // the r0 operations are the first table
			}
		}
		state := string(r.State)
		if r.Note != "" {
			state += ": " + r.Note
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", v, r.Op.Method, r.Op.Path, r.What, state)
	}
	tw.Flush()
	fmt.Fprintf(&sb, "/versions claims: %s\n", strings.Join(csapi.Versions, " "))
	return sb.String()
}

// TestCoverageTableMatchesTheCode keeps the coverage table (and so
// /versions) honest: an operation is pending exactly when it is stubbed in
// a pending*.go file, and every deliberately unsupported operation has a
// conformance state that checks the Matrix error it answers.
func TestCoverageTableMatchesTheCode(t *testing.T) {
	pending := pendingOperations(t)
	ops := map[string]bool{}
	for _, o := range specversions.FromClientAPI(clientapi.SpecOperations) {
		ops[o.ID] = true
		method := strings.ToUpper(o.ID[:1]) + o.ID[1:]
		_, stubbed := pending[method]
		_, marked := csapi.Coverage.Pending[o.ID]
		if stubbed && !marked {
			t.Errorf("%s is stubbed in %s but not pending in csapi.Coverage: /versions would claim it", o.ID, pending[method])
		}
		if marked && !stubbed {
			t.Errorf("%s is pending in csapi.Coverage but served (no stub in a pending*.go file): mark it served", o.ID)
		}
		if _, unsupported := csapi.Coverage.Unsupported[o.ID]; unsupported {
			checked := false
			for _, st := range states[method] {
				checked = checked || st.Unsupported != ""
			}
			if !checked {
				t.Errorf("%s is deliberately unsupported in csapi.Coverage but no conformance state checks its error", o.ID)
			}
		}
	}
	for _, m := range []map[string]string{csapi.Coverage.Pending, csapi.Coverage.Unsupported} {
		for key := range m {
			id, _, _ := strings.Cut(key, "@")
			if !ops[id] {
				t.Errorf("csapi.Coverage names %q, which is no operation of the vendored spec", key)
			}
		}
	}
}
