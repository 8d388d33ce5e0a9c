// Package specversions derives the spec versions the server may claim in
// GET /versions from the state of each operation of the vendored spec.
//
// The spec annotates what each version added or changed
// (x-addedInMatrixVersion, x-changedInMatrixVersion; gen/specgen reads them
// into gen/<api>/specversions.gen.go). Each such change is a row of the
// coverage table, served, deliberately unsupported (with the reason, the
// Matrix error the server answers) or pending (not built yet). A version is
// claimed only when every row of its own and of every earlier v1.x version
// is served or deliberately unsupported; the r0 versions need every
// operation that predates v1.1.
package specversions

import (
	"sort"
	"strconv"
	"strings"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/gen/fedapi"
)

// State is how the server serves a row.
type State string

const (
	Served      State = "served"
	Unsupported State = "unsupported" // deliberately, with a reason
	Pending     State = "pending"     // not built yet
)

// Operation is one operation of the spec with its annotated changes.
type Operation struct {
	ID, Method, Path string
	AddedIn          string // "" before v1.1
	Changes          []Change
}

// Change is what one version added or changed.
type Change struct{ Version, What string }

// FromClientAPI and FromFedAPI adapt the generated tables.
func FromClientAPI(ops []clientapi.SpecOperation) []Operation {
	out := make([]Operation, len(ops))
	for i, o := range ops {
		out[i] = Operation{ID: o.ID, Method: o.Method, Path: o.Path, AddedIn: o.AddedIn}
		for _, c := range o.Changes {
			out[i].Changes = append(out[i].Changes, Change{c.Version, c.What})
		}
	}
	return out
}

func FromFedAPI(ops []fedapi.SpecOperation) []Operation {
	out := make([]Operation, len(ops))
	for i, o := range ops {
		out[i] = Operation{ID: o.ID, Method: o.Method, Path: o.Path, AddedIn: o.AddedIn}
		for _, c := range o.Changes {
			out[i].Changes = append(out[i].Changes, Change{c.Version, c.What})
		}
	}
	return out
}

// Feature is a change of a version that the spec's annotations do not
// carry (read from its changelog and prose), tied to an operation.
type Feature struct {
	Version, Op, What string
}

// Status says how the server serves the operations: keys are operation IDs
// (the whole operation) or "opID@1.3" (what version 1.3 added or changed in
// it, including Features). Anything not named is served.
type Status struct {
	Unsupported map[string]string // → the reason
	Pending     map[string]string // → what is missing
}

// Row is one line of the coverage table.
type Row struct {
	Version string // "" for operations that predate v1.1
	Op      Operation
	What    string
	State   State
	Note    string
}

// Rows builds the coverage table: per operation, its base row (the version
// that added it) and one row per annotated change or feature.
func Rows(ops []Operation, features []Feature, st Status) []Row {
	var rows []Row
	byID := map[string]Operation{}
	for _, o := range ops {
		byID[o.ID] = o
		rows = append(rows, st.row(o, o.AddedIn, "operation"))
		for _, c := range o.Changes {
			rows = append(rows, st.row(o, c.Version, c.What))
		}
	}
	for _, f := range features {
		if o, ok := byID[f.Op]; ok {
			rows = append(rows, st.row(o, f.Version, f.What))
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Version != rows[j].Version {
			return Less(rows[i].Version, rows[j].Version)
		}
		return rows[i].Op.Path < rows[j].Op.Path
	})
	return rows
}

func (st Status) row(o Operation, version, what string) Row {
	r := Row{Version: version, Op: o, What: what, State: Served}
	if version != "" {
		if n, ok := st.Pending[o.ID+"@"+version]; ok {
			r.State, r.Note = Pending, n
			return r
		}
		if n, ok := st.Unsupported[o.ID+"@"+version]; ok {
			r.State, r.Note = Unsupported, n
			return r
		}
	}
	if n, ok := st.Pending[o.ID]; ok {
		r.State, r.Note = Pending, n
	} else if n, ok := st.Unsupported[o.ID]; ok {
		r.State, r.Note = Unsupported, n
	}
	return r
}

// R0 lists the r0 versions, claimed together when every operation that
// predates v1.1 is served or deliberately unsupported.
var R0 = []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1"}

// Latest is the newest spec version vendored.
const Latest = "1.19"

// Claimable returns the versions GET /versions may list: the r0 line when
// the operations predating v1.1 are all answered by design, and each v1.x
// whose rows, and those of every earlier v1.x, are.
func Claimable(rows []Row) []string {
	out := []string{}
	ok := func(r Row) bool { return r.State != Pending }
	base := true
	for _, r := range rows {
		if r.Version == "" && !ok(r) {
			base = false
		}
	}
	if base {
		out = append(out, R0...)
	}
	latestMinor := minor(Latest)
	for m := 1; m <= latestMinor; m++ {
		v := "1." + strconv.Itoa(m)
		for _, r := range rows {
			if r.Version == v && !ok(r) {
				return out
			}
		}
		out = append(out, "v"+v)
	}
	return out
}

// Blocking returns the pending rows that keep version v ("1.4") off
// /versions: its own and those of earlier v1.x versions.
func Blocking(rows []Row, v string) []Row {
	var out []Row
	for _, r := range rows {
		if r.Version != "" && !Less(v, r.Version) && r.State == Pending {
			out = append(out, r)
		}
	}
	return out
}

// Less orders versions numerically ("" first, "1.2" before "1.10").
func Less(a, b string) bool {
	if a == "" || b == "" {
		return a == "" && b != ""
	}
	if major(a) != major(b) {
		return major(a) < major(b)
	}
	return minor(a) < minor(b)
}

func major(v string) int {
	n, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return n
}

func minor(v string) int {
	parts := strings.SplitN(v, ".", 2)
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}
