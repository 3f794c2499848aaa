// Command idlefloor is the bench's reference for the idle cost of a Go daemon on the
// machine at hand: a process set up as keepraftd is (one P, a millisecond of timer
// slack) that does nothing but wake on a ticker and make one TCP round trip per tick to
// an echo server in another process, so each tick is two wakeups, a timer's and an
// answer's, as a probe or a lease renewal is. Its CPU at a given rate is the floor under
// any daemon with that many exchanges a second, whatever work they carry.
//
//	idlefloor -serve ADDR          echo every byte received on ADDR
//	idlefloor -rate N -addr ADDR   N round trips a second to ADDR
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/keepraft/keepraft/internal/timerslack"
)

func main() {
	serve := flag.String("serve", "", "listen on this address and echo")
	addr := flag.String("addr", "", "echo server to exchange with")
	rate := flag.Int("rate", 10, "round trips a second")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	if _, err := timerslack.Set(timerslack.Default); err != nil {
		fmt.Fprintln(os.Stderr, "idlefloor: timer slack:", err)
	}
	var err error
	switch {
	case *serve != "":
		err = echo(*serve)
	case *addr != "" && *rate > 0:
		err = exchange(*addr, *rate)
	default:
		err = errors.New("give -serve ADDR, or -addr ADDR with -rate above 0")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idlefloor:", err)
		os.Exit(1)
	}
}

// echo serves one connection at a time: the bench runs one client.
func echo(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept on %s: %w", addr, err)
		}
		_, _ = io.Copy(c, c)
		_ = c.Close()
	}
}

// exchange makes rate round trips of 64 bytes a second until the connection fails.
func exchange(addr string, rate int) error {
	var c net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	buf := make([]byte, 64)
	t := time.NewTicker(time.Second / time.Duration(rate))
	for range t.C {
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("write to %s: %w", addr, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
	}
	return nil
}
