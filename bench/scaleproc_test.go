package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The processes of the scale harness (scale_test.go): the spotoken binary
// built from this checkout, run as child processes whose CPU time and
// memory are read from /proc, and a load generator that drives them over
// loopback TCP from this process.

// buildSpotoken builds ./cmd/spotoken into dir and returns the executable.
func buildSpotoken(dir string) (string, error) {
	bin := filepath.Join(dir, "spotoken")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/spotoken")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/spotoken: %v\n%s", err, out)
	}
	return bin, nil
}

// childProc is a running spotoken process: its first line of standard
// output (serve's and emulator's base URL, or serve --json's object), its
// standard error in a file, the rest of its standard output discarded.
type childProc struct {
	name    string
	cmd     *exec.Cmd
	first   string
	started time.Duration // from exec to the first line
	logPath string
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// startChild runs bin with args, its standard error appended to logPath,
// and waits up to timeout for the first line of its standard output.
func startChild(name, bin, logPath string, timeout time.Duration, args ...string) (*childProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p := &childProc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	select {
	case p.first = <-first:
		p.started = time.Since(t0)
	case <-p.done:
		return nil, fmt.Errorf("%s exited (%v) before its first line; its log:\n%s", name, p.waitErr, tailFile(logPath, 4000))
	case <-time.After(timeout):
		p.stop()
		return nil, fmt.Errorf("%s printed nothing within %v; its log:\n%s", name, timeout, tailFile(logPath, 4000))
	}
	if p.first == "" {
		p.stop()
		return nil, fmt.Errorf("%s printed an empty first line; its log:\n%s", name, tailFile(logPath, 4000))
	}
	return p, nil
}

func (p *childProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to three minutes for the process to
// exit (then kills it); it returns how long the exit took and an error
// when it was not clean.
func (p *childProc) stop() (time.Duration, error) {
	var err error
	var took time.Duration
	p.once.Do(func() {
		t0 := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.waitErr != nil {
				err = fmt.Errorf("%s: %v", p.name, p.waitErr)
			}
		case <-time.After(3 * time.Minute):
			p.cmd.Process.Kill()
			<-p.done
			err = fmt.Errorf("%s did not stop within three minutes of SIGTERM", p.name)
		}
		took = time.Since(t0)
	})
	return took, err
}

// alive reports whether the process is still running.
func (p *childProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tailFile returns the last max bytes of the file at path.
func tailFile(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// pidCPU returns the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat: the server's own, not the load generator's.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after the last ')'. utime and stime are fields 14
	// and 15 of the whole line, 12th and 13th after the name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// pidMemory returns VmRSS and VmHWM of process pid, in bytes.
func pidMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	var gotRSS, gotHWM bool
	for line := range strings.Lines(string(b)) {
		var kb int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			_, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb)
			rss, gotRSS = kb<<10, err == nil
		case strings.HasPrefix(line, "VmHWM:"):
			_, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb)
			hwm, gotHWM = kb<<10, err == nil
		}
	}
	if !gotRSS || !gotHWM {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}

// scaleReq is one request of a scale run and how to check its answer.
type scaleReq struct {
	req   *http.Request
	check func(status int, body []byte) error
	// due, when set, is when an open-loop run meant to send the request:
	// its latency counts from then.
	due time.Time
}

// scaleRun is what one run of the load generator measured.
type scaleRun struct {
	requests int
	elapsed  time.Duration
	cpu      time.Duration // the server's CPU time during the run (/proc)
	deferred time.Duration // the server's CPU time after the run, writing what it left behind (settle)
	gen      time.Duration // this process's CPU time during the run: the load generator's, on the same cores
	lat      []time.Duration
	err      error // the first failed check or transport error
}

func (r scaleRun) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

func (r scaleRun) quantile(q float64) time.Duration {
	return lgResult{lat: r.lat}.quantile(q)
}

// settledRPS is the run's throughput had the work it left behind been
// done within it, on a machine whose cores the run kept busy: its CPU
// time spread over them is added to the run's time.
func (r scaleRun) settledRPS(cores int) float64 {
	d := r.elapsed + r.deferred/time.Duration(max(1, cores))
	if d <= 0 {
		return 0
	}
	return float64(r.requests) / d.Seconds()
}

// perReq is d divided among the run's requests (0 with none).
func (r scaleRun) perReq(d time.Duration) time.Duration {
	if r.requests == 0 {
		return 0
	}
	return d / time.Duration(r.requests)
}

// settledCPUPerReq is the server's CPU a request, the work it left
// behind included.
func (r scaleRun) settledCPUPerReq() time.Duration { return r.perReq(r.cpu + r.deferred) }

// deferredPerReq is the server's CPU a request spent after the run.
func (r scaleRun) deferredPerReq() time.Duration { return r.perReq(r.deferred) }

// cpuPerReq is the server's CPU a request during the run.
func (r scaleRun) cpuPerReq() time.Duration { return r.perReq(r.cpu) }

// genPerReq is the load generator's CPU a request: it shares the machine
// with the server, so what it spends counts in the run's throughput.
func (r scaleRun) genPerReq() time.Duration { return r.perReq(r.gen) }

func (r *scaleRun) add(o scaleRun) {
	r.requests += o.requests
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.deferred += o.deferred
	r.gen += o.gen
	r.lat = append(r.lat, o.lat...)
	if r.err == nil {
		r.err = o.err
	}
	slices.Sort(r.lat)
}

// scaleDrive is a closed-loop load generator: workers send requests made
// by next back to back until next says there are no more, stop is closed,
// or a check fails. Every request's latency is kept. The server's CPU
// time is read from /proc/<pid> around the run.
func scaleDrive(c *http.Client, pid, workers int, stop <-chan struct{}, next func() (scaleReq, bool)) scaleRun {
	var (
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool
		wg       sync.WaitGroup
		lats     = make([][]time.Duration, workers)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		failed.Store(true)
	}
	cpu0, _ := pidCPU(pid)
	gen0, _ := pidCPU(os.Getpid())
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for !failed.Load() {
				select {
				case <-stop:
					return
				default:
				}
				r, ok := next()
				if !ok {
					return
				}
				t0 := time.Now()
				if !r.due.IsZero() {
					t0 = r.due
				}
				resp, err := c.Do(r.req)
				if err != nil {
					fail(err)
					return
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if err == nil {
					err = r.check(resp.StatusCode, buf.Bytes())
				}
				if err != nil {
					fail(fmt.Errorf("%s %s: %w", r.req.Method, r.req.URL.Path, err))
					return
				}
				lats[w] = append(lats[w], d)
			}
		}()
	}
	wg.Wait()
	res := scaleRun{elapsed: time.Since(start), err: firstErr}
	if cpu1, err := pidCPU(pid); err == nil {
		res.cpu = cpu1 - cpu0
	}
	if gen1, err := pidCPU(os.Getpid()); err == nil {
		res.gen = gen1 - gen0
	}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	res.requests = len(res.lat)
	slices.Sort(res.lat)
	return res
}

// scaleOpen is an open-loop load generator: request k is due at
// start + k/rate, whichever of workers is free sends it, and its latency
// counts from when it was due, so time spent queueing for a worker is
// measured too (no coordinated omission). It stops as scaleDrive does.
func scaleOpen(c *http.Client, pid, workers int, rate float64, stop <-chan struct{}, next func() (scaleReq, bool)) scaleRun {
	due := make(chan time.Time, 1<<16)
	start := time.Now()
	go func() {
		defer close(due)
		for k := 0; ; k++ {
			t := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
			select {
			case <-stop:
				return
			case <-time.After(time.Until(t)):
			}
			select {
			case due <- t:
			default: // a backlog of 65536: the run is hopeless anyway
				return
			}
		}
	}()
	var mu sync.Mutex
	r := scaleDrive(c, pid, workers, nil, func() (scaleReq, bool) {
		t, ok := <-due
		if !ok {
			return scaleReq{}, false
		}
		mu.Lock()
		req, ok := next()
		mu.Unlock()
		if ok {
			req.due = t
		}
		return req, ok
	})
	return r
}

// timer returns a channel closed after d.
func timer(d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(d, func() { close(ch) })
	return ch
}

// waitReady polls url until it answers 200, for up to timeout.
func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %v (last: %v)", url, timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
