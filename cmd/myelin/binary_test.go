package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A function that looks methods up by name through reflection (text/template
// and html/template executing a template, reflect.Value.MethodByName …)
// makes the linker keep every exported method of every type reachable from
// an interface: on this server about 7 MB of binary, and as much resident
// memory on kernels that map whole binaries in large folios. The pages are
// templ components for that reason (see impl/web).
func TestServerBinaryLinksNoReflectiveMethodLookup(t *testing.T) {
	if testing.Short() {
		t.Skip("links the server (-short)")
	}
	cmd := exec.Command("go", "build", "-ldflags=-dumpdep", "-o", os.DevNull, ".")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%.2000s", err, out)
	}
	var culprits []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	for sc.Scan() {
		// "caller <ReflectMethod> -> callee": the linker marks the
		// functions that make it keep every exported method.
		line := sc.Text()
		from, _, ok := strings.Cut(line, " -> ")
		if !ok || !strings.Contains(from, "<ReflectMethod>") || seen[from] {
			continue
		}
		seen[from] = true
		culprits = append(culprits, from)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(culprits) > 0 {
		// Who calls the first one shows which package brought it in.
		var callers []string
		target := strings.TrimSpace(strings.Replace(culprits[0], "<ReflectMethod>", "", 1))
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.HasSuffix(l, "-> "+target) || strings.Contains(l, "-> "+target+" <") {
				callers = append(callers, l)
			}
		}
		t.Fatalf("the server binary looks methods up by reflection, so the linker keeps every exported method:\n%s\ncalled from:\n%s",
			strings.Join(culprits, "\n"), strings.Join(callers, "\n"))
	}
}
