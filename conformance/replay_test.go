package conformance

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myelin-hs/myelin/conformance/validate"
	"github.com/myelin-hs/myelin/gen/clientapi/fullspec"
	fedfullspec "github.com/myelin-hs/myelin/gen/fedapi/fullspec"
	"github.com/myelin-hs/myelin/impl/testenv"
)

var printReport = flag.Bool("conformance.report", false, "print the coverage table to stdout (make conformance)")

// operation is one operation of the embedded OpenAPI documents.
type operation struct {
	Method, Path string
	Op           *openapi3.Operation
	// Security is the scheme the spec requires: "accessToken",
	// "signedRequest" or "".
	Security string
}

func (o operation) ID() string { return o.Op.OperationID }

// operations lists every operation of both documents, in path order.
func operations(t testing.TB) []operation {
	t.Helper()
	var out []operation
	for _, load := range []func() (*openapi3.T, error){fullspec.GetSpec, fedfullspec.GetSpec} {
		doc, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				o := operation{Method: method, Path: path, Op: op}
				reqs := doc.Security
				if op.Security != nil {
					reqs = *op.Security
				}
				for _, req := range reqs {
					for name := range req {
						o.Security = name
						if strings.HasPrefix(name, "accessToken") {
							// accessTokenQuery, accessTokenBearer: one scheme
							o.Security = "accessToken"
						}
					}
				}
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// successStatus is the lowest 2xx status the operation declares.
func successStatus(op *openapi3.Operation) int {
	best := 0
	for code := range op.Responses.Map() {
		n, err := strconv.Atoi(code)
		if err == nil && n/100 == 2 && (best == 0 || n < best) {
			best = n
		}
	}
	return best
}

// statesFor returns the states op's examples are replayed in.
func statesFor(o operation) []state {
	if sts, ok := states[o.ID()]; ok {
		return sts
	}
	if o.Security == "accessToken" {
		return []state{{Account: "alice"}}
	}
	return []state{{}}
}

func (s state) target(o operation) int {
	if s.Status != 0 {
		return s.Status
	}
	return successStatus(o.Op)
}

// request is an example request built from the spec.
type request struct {
	URI  string // path with the x-example path parameters, and query
	Body map[string]any
	UIA  bool // the body schema has an auth property
}

// buildRequest assembles op's example request: x-example values for path
// and query parameters (or, for a parameter the spec gives no example,
// its value in params), the documented body.
func buildRequest(o operation, params map[string]string) (request, error) {
	path := o.Path
	q := url.Values{}
	for _, p := range o.Op.Parameters {
		pv := p.Value
		ex, ok := pv.Extensions["x-example"]
		if !ok && pv.Example != nil {
			ex, ok = pv.Example, true
		}
		if v, given := params[pv.Name]; !ok && given {
			ex, ok = v, true
		}
		switch {
		case !ok && pv.Required:
			return request{}, fmt.Errorf("required %s parameter %s has no x-example", pv.In, pv.Name)
		case !ok:
			continue
		case pv.In == "path":
			path = strings.ReplaceAll(path, "{"+pv.Name+"}", url.PathEscape(fmt.Sprint(ex)))
		case pv.In == "query":
			q.Set(pv.Name, fmt.Sprint(ex))
		}
	}
	r := request{URI: path}
	if len(q) > 0 {
		r.URI += "?" + q.Encode()
	}
	if o.Op.RequestBody != nil {
		body, ok := requestBodyExample(o.Op)
		if !ok && o.Op.RequestBody.Value.Required {
			return request{}, fmt.Errorf("the required request body has no example")
		}
		r.Body = body
		if mt := o.Op.RequestBody.Value.Content.Get("application/json"); mt != nil {
			_, r.UIA = properties(mt.Schema)["auth"]
		}
	}
	return r, nil
}

type outcome string

const (
	passed      outcome = "passed"
	failed      outcome = "failed"
	unsupported outcome = "unsupported"
	skipped     outcome = "skipped"
)

type caseResult struct {
	Op      operation
	Backend testenv.Backend
	Status  int
	Outcome outcome
	Note    string
}

// TestConformanceExamples replays every operation's documented examples
// against a real server on each backend and prints the coverage table.
func TestConformanceExamples(t *testing.T) {
	ops := operations(t)
	pending := pendingOperations(t)
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var results []caseResult
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		for _, o := range ops {
			for _, st := range statesFor(o) {
				// Outcome stays skipped when the case stops at t.Skip.
				res := caseResult{Op: o, Backend: b, Status: st.target(o), Outcome: skipped}
				t.Run(fmt.Sprintf("%s/%d", o.ID(), res.Status), func(t *testing.T) {
					t.Parallel() // each case has its own server and database
					defer func() {
						if t.Failed() {
							res.Outcome = failed
						}
						mu.Lock()
						results = append(results, res)
						mu.Unlock()
					}()
					res.Outcome, res.Note = replay(t, b, v, o, st, pending)
				})
			}
		}
	})
	table := renderVersions() + "\n" + renderReport(ops, pending, results)
	if *printReport {
		fmt.Print(table)
	} else {
		t.Log("\n" + table)
	}
}

// replay runs one case. It fails t on any violation; otherwise it says
// whether the case passed, found the operation unsupported, or could not
// run because its setup needs an operation not built yet.
func replay(t *testing.T, b testenv.Backend, v *validate.Validator, o operation, st state, pending map[string]string) (outcome, string) {
	target := st.target(o)
	if target == 0 {
		t.Fatalf("%s declares no success status", o.ID())
	}
	if o.Op.Responses.Status(target) == nil && st.Unsupported == "" {
		t.Fatalf("state table: %s does not declare status %d", o.ID(), target)
	}
	req, err := buildRequest(o, st.Params)
	if err != nil {
		t.Fatalf("%s: %v", o.ID(), err)
	}
	e, err := newEnv(t, b, st)
	var blk *blocked
	if errors.As(err, &blk) {
		if file, ok := pending[o.ID()]; ok {
			return unsupported, "not built yet (" + file + ")"
		}
		if file, ok := pending[blk.op]; ok {
			t.Skipf("%v (%s: not built yet)", blk, file)
		}
	}
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if st.Prepare != nil { // req.Body is nil for requests without one
		if err := st.Prepare(e, req.Body); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	token := e.token
	if st.BadToken {
		token = "not-a-token-anyone-holds"
	}
	signed := o.Security == "signedRequest"

	var r testenv.Response
	for try := 0; try <= st.Retries; try++ {
		if req.UIA {
			r, err = e.uia(o.ID(), o.Method, req.URI, token, req.Body)
			if err != nil && !errors.As(err, &blk) {
				t.Fatalf("%v", err)
			}
		} else {
			r = e.send(o.Method, req.URI, token, signed, req.Body)
		}
		if r.Status == target {
			break
		}
	}

	if r.Status == http.StatusNotImplemented && r.Str("errcode") == "M_UNRECOGNIZED" {
		return unsupported, "501 M_UNRECOGNIZED: " + r.Str("error")
	}
	if r.Status != target {
		why := ""
		if st.Why != "" {
			why = " (" + st.Why + ")"
		}
		t.Errorf("%s %s: want the documented %d%s, got %d: %.400s", o.Method, req.URI, target, why, r.Status, r.Raw)
	}
	hreq, err := http.NewRequest(o.Method, e.srv.URL+req.URI, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(hreq, r.Status, r.Header, r.Raw); err != nil {
		t.Errorf("%v", err)
	}
	if st.Unsupported != "" {
		return unsupported, fmt.Sprintf("%d %s: %s", r.Status, r.Str("errcode"), r.Str("error"))
	}
	example, schema := responseExample(o.Op, strconv.Itoa(r.Status))
	if example == nil || r.Status != target {
		return passed, "no documented example body"
	}
	var actual any
	if err := json.Unmarshal(r.Raw, &actual); err != nil {
		t.Fatalf("response is not JSON: %.300s", r.Raw)
	}
	if errs := compareExample(example, actual, schema, st.Absent); len(errs) > 0 {
		t.Errorf("%s %s → %d: the documented example's keys are not all present with the same types: %s\nexample:  %s\nresponse: %.600s",
			o.Method, req.URI, r.Status, summarize(errs), mustJSON(example), r.Raw)
	}
	return passed, "example keys present"
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
