package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
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
	return o.startIn(name, addr, "", argv)
}

// startIn is start with the working directory dir ("": this one's).
func (o *options) startIn(name, addr, dir string, argv []string) (*proc, time.Duration, error) {
	if o.pin {
		// taskset execs the program: the PID stays the server's.
		argv = append([]string{"taskset", "-c", strconv.Itoa(o.serverCPU)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	if name == "myelin" {
		cmd.Env = append(cmd.Env, o.serverEnv...)
	}
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
	d, _ := pidCPU(p.cmd.Process.Pid)
	return d
}

// benchAppName is the application_name of the servers' PostgreSQL
// connections.
const benchAppName = "myelin-bench-server"

// cpuSample is the CPU time used so far by each of a set of processes.
type cpuSample map[int]time.Duration

// since is the CPU time used between s0 and s; a process that appeared in
// between counts whole, one that disappeared is not counted.
func (s cpuSample) since(s0 cpuSample) time.Duration {
	var d time.Duration
	for pid, t := range s {
		d += t - s0[pid]
	}
	return d
}

// sampleDB samples the CPU time of the database backends serving the
// server under test (nil when that is not measurable).
func (o *options) sampleDB() cpuSample {
	if o.dbCPU == nil {
		return nil
	}
	return o.dbCPU()
}

// backendPIDs lists the PostgreSQL backends whose connections carry
// benchAppName.
func backendPIDs(ctx context.Context, st *storage.Store) []int {
	var pids []int
	if err := st.DB.NewRaw("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = ?", benchAppName).
		Scan(ctx, &pids); err != nil {
		return nil
	}
	return pids
}

// backendsCPU samples the PostgreSQL backends whose connections carry
// benchAppName, when they run on this machine and /proc shows them.
func backendsCPU(ctx context.Context, st *storage.Store) cpuSample {
	pids := backendPIDs(ctx, st)
	if pids == nil {
		return nil
	}
	s := cpuSample{}
	for _, pid := range pids {
		if d, ok := pidCPU(pid); ok {
			s[pid] = d
		}
	}
	return s
}

// pidCPU is the CPU time (user + system) process pid has used so far.
func pidCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name (which may contain spaces): state is
	// field 3, utime and stime are fields 14 and 15, in clock ticks.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
