package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server process under test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	addr   string
	exited chan error
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs argv as a server on the server core (GOMAXPROCS=1) and waits
// until it answers GET /_matrix/client/versions on addr. It returns the
// time from starting the process to that first answer.
func (o *options) start(name, addr string, argv []string) (*proc, time.Duration, error) {
	if o.pin {
		// taskset execs the program: the PID stays the server's.
		argv = append([]string{"taskset", "-c", strconv.Itoa(o.serverCPU)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	if o.verbose {
		cmd.Stderr = os.Stderr
	}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, addr: addr, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	probe := httpRequest("GET", addr, "/_matrix/client/versions", "", nil)
	for {
		if status, _, err := once(addr, probe); err == nil && status == 200 {
			return p, time.Since(begin), nil
		}
		select {
		case err := <-p.exited:
			return nil, 0, fmt.Errorf("%s exited before serving: %v (run with -v to see its log)", name, err)
		case <-time.After(time.Millisecond):
		}
		if time.Since(begin) > 60*time.Second {
			p.stop()
			return nil, 0, fmt.Errorf("%s did not serve within 60s", name)
		}
	}
}

// stop asks the server to shut down (SIGTERM) and kills it if it lingers.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// statusKB reads a "Vm…" line of /proc/PID/status in KiB.
func (p *proc) statusKB(field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// resetPeak restarts VmHWM from the current RSS, so each scenario reports
// its own peak.
func (p *proc) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// cpuTime is the CPU time (user + system) the process has used so far.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces): state is
	// field 3, utime and stime are fields 14 and 15, in clock ticks.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
