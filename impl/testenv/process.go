package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildMyelin compiles cmd/myelin into the test's temporary directory, for
// tests that run real server processes.
func BuildMyelin(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "myelin")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/myelin-hs/myelin/cmd/myelin").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Process is a `myelin serve` process started by a test.
type Process struct {
	URL string
	cmd *exec.Cmd
	mu  sync.Mutex
	log bytes.Buffer
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

// StartProcess runs `bin serve args…` on a free loopback port and returns
// once it has logged that it listens. It is stopped (SIGTERM) when the
// test ends, and its log is shown if the test failed.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{}
	p.cmd = exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(p, sc.Text())
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "myelin listening" {
				addr <- line.Addr
			}
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("log of the process at %s:\n%s", p.URL, p.log.String())
			p.mu.Unlock()
		}
	})
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-time.After(30 * time.Second):
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("myelin did not start:\n%s", p.log.String())
	}
	return p
}
