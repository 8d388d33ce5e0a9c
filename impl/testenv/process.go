package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// FreeAddr returns a loopback host:port nobody listens on now, for a
// process whose address must be known before it starts (another server's
// configuration names it) or kept across a restart.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a `myelin serve` process started by a test.
type Process struct {
	URL     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has exited
	err     error         // its exit status, once exited is closed
	stopped bool
	mu      sync.Mutex
	log     bytes.Buffer
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

// StartProcess runs `bin serve args…` on a free loopback port and returns
// once it has logged that it listens, so args must leave the log level at
// info or below. A --listen in args replaces the free port (later flags
// win). The process is stopped when the test ends, and its log is shown if
// the test failed.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{exited: make(chan struct{})}
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
		// Wait only once stderr is read to its end (os/exec's rule).
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("log of myelin serve %s (at %s):\n%s", strings.Join(args, " "), p.URL, p.log.String())
			p.mu.Unlock()
		}
	})
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.exited:
		p.stopped = true
		t.Fatalf("myelin serve exited before listening: %v", p.err)
	case <-time.After(30 * time.Second):
		t.Fatal("myelin serve did not listen within 30s")
	}
	return p
}

// Stop shuts the process down gracefully (SIGTERM) and waits for it. A
// process that does not stop within 30 s is killed; that, or an exit
// status other than success, fails the test. Stopping again does nothing.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("myelin at %s exited: %v", p.URL, p.err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("myelin at %s did not stop within 30s of SIGTERM", p.URL)
	}
}

// Signal sends sig to the process (e.g. SIGHUP to reload).
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Log returns what the process has logged so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}
