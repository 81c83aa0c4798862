package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/httpapi"
)

// Zero-downtime upgrade (SIGHUP). The running process starts its successor
// from the executable now at its path (a deploy replaces the file first),
// with the same arguments and its two listening sockets. The successor
// reads and validates its configuration and says so; only then does the old
// process stop accepting, drain its in-flight requests, release its engines
// (the embedded JetStream store and SQLite file, table leases) and let the
// successor open them and serve on the inherited sockets. Connections that
// arrive in between wait in the kernel's accept queue, never refused; a
// successor that fails before it is ready leaves the old process serving.
//
// File descriptors handed to the successor (ExtraFiles start at 3).
const (
	upgradeEnv     = "BUZZER_UPGRADE"
	fdPlayer       = 3
	fdAdmin        = 4
	fdReady        = 5 // successor -> old: one byte once its configuration is valid
	fdGo           = 6 // old -> successor: EOF once the engines are released
	upgradeTimeout = 60 * time.Second
)

// successor is what a process started by an upgrade inherited.
type successor struct {
	player, admin  net.Listener
	ready, goAhead *os.File
}

// inherited returns the sockets and pipes of an upgrade, or nil when this
// process was not started by one.
func inherited() (*successor, error) {
	if os.Getenv(upgradeEnv) != "1" {
		return nil, nil
	}
	_ = os.Unsetenv(upgradeEnv) // this process's own successor gets its own
	listen := func(fd uintptr, name string) (net.Listener, error) {
		f := os.NewFile(fd, name)
		defer f.Close()
		l, err := net.FileListener(f)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot adopt the inherited %s", name)
		}
		return l, nil
	}
	p, err := listen(fdPlayer, "player listener")
	if err != nil {
		return nil, err
	}
	a, err := listen(fdAdmin, "admin listener")
	if err != nil {
		p.Close()
		return nil, err
	}
	return &successor{player: p, admin: a, ready: os.NewFile(fdReady, "upgrade ready"), goAhead: os.NewFile(fdGo, "upgrade go")}, nil
}

// takeOver tells the old process this one is ready to start, then waits
// until it has released the engines (or died, which releases them too).
func (s *successor) takeOver(log *slog.Logger) error {
	_, err := s.ready.Write([]byte{1})
	s.ready.Close()
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the process being upgraded is gone")
	}
	log.Info("upgrade: configuration valid; waiting for the old process to release the engines")
	_ = s.goAhead.SetReadDeadline(time.Now().Add(upgradeTimeout))
	_, err = io.Copy(io.Discard, s.goAhead)
	s.goAhead.Close()
	if err != nil {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "the old process did not release the engines within %s", upgradeTimeout)
	}
	return nil
}

// startSuccessor starts the next process with the listeners and waits until
// it has validated its configuration. It returns the pipe whose closing lets
// the successor open the engines.
func startSuccessor(srv *httpapi.Server, log *slog.Logger) (*os.File, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot find this executable")
	}
	files, err := srv.ListenerFiles()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), upgradeEnv+"=1")
	cmd.ExtraFiles = []*os.File{files[0], files[1], readyW, goR}
	err = cmd.Start()
	readyW.Close()
	goR.Close()
	if err != nil {
		goW.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot start %s", exe)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	log.Info("upgrade: successor started; waiting for it to validate its configuration", "pid", cmd.Process.Pid, "exe", exe)
	_ = readyR.SetReadDeadline(time.Now().Add(upgradeTimeout))
	b := make([]byte, 1)
	if n, err := readyR.Read(b); n != 1 {
		goW.Close()
		_ = cmd.Process.Kill()
		werr := <-exited
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "the successor did not become ready (%v; exit: %v); still serving", err, werr)
	}
	return goW, nil
}

// pidFile is where a serving process writes its process ID, so operators
// (and tests) find the process that took over after an upgrade.
func pidFile(dataDir string) string { return filepath.Join(dataDir, "buzzer.pid") }

func writePID(dataDir string) error {
	return os.WriteFile(pidFile(dataDir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// removePID removes the pid file if it still names this process (after an
// upgrade it names the successor).
func removePID(dataDir string) {
	b, err := os.ReadFile(pidFile(dataDir))
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(pidFile(dataDir))
	}
}
