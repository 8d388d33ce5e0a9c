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
