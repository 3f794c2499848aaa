package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/mtls"
)

// parseAddrs splits --addr's comma-separated list.
func parseAddrs(v string) ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--addr: no address in %q", v)
	}
	return out, nil
}

// order is the addresses to try: the last one that answered first, then the rest as given.
func (c *cli) order() []string {
	if c.good == "" || c.good == c.addrs[0] {
		return c.addrs
	}
	out := []string{c.good}
	for _, a := range c.addrs {
		if a != c.good {
			out = append(out, a)
		}
	}
	return out
}

// addrHint is the --addr value for a follow-up command: the node that answered first.
func (c *cli) addrHint() string { return strings.Join(c.order(), ",") }

// client returns the API client: under mutual TLS the certificate is the credential;
// otherwise auth adds the bearer token from --token-file.
func (c *cli) client(auth bool) (*api.Client, error) {
	if len(c.addrs) == 0 {
		return nil, fmt.Errorf("--addr: no address given (or KEEPRAFT_ADDR)")
	}
	tls := c.cert != "" || c.key != "" || c.ca != ""
	if tls {
		auth = false
	}
	if cl, ok := c.clients[auth]; ok {
		return cl, nil
	}
	var cl *api.Client
	switch {
	case tls:
		if c.cert == "" || c.key == "" || c.ca == "" {
			return nil, fmt.Errorf("--ca, --cert and --key go together (got ca %q, cert %q, key %q)", c.ca, c.cert, c.key)
		}
		b, err := mtls.Load(mtls.Files{CA: c.ca, Cert: c.cert, Key: c.key})
		if err != nil {
			return nil, err
		}
		cl = api.NewTLSClient("", &http.Client{Transport: &http.Transport{TLSClientConfig: b.ClientConfig("")}})
	case auth:
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return nil, err
		}
		cl = api.NewClient(tok, http.DefaultClient)
	default:
		cl = api.NewClient("", http.DefaultClient)
	}
	c.clients[auth] = cl
	return cl, nil
}

// readToken reads the bearer token of --token-file, refusing a file that group or others
// may read or write, as keepraftd does for cluster.token_file.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--token-file: %s has mode %04o: group or others can read or write it; chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("--token-file: read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// call sends one API request, trying the --addr addresses in order until one answers.
// A read moves on after any failure without an HTTP answer; a mutating call only when
// the connection was never made, so a request is never sent twice.
func (c *cli) call(ctx context.Context, method, path string, body, out any, auth bool) error {
	return c.callWithin(ctx, method, path, body, out, auth, c.timeout)
}

func (c *cli) callWithin(ctx context.Context, method, path string, body, out any, auth bool, timeout time.Duration) error {
	cl, err := c.client(auth)
	if err != nil {
		return err
	}
	addrs := c.order()
	var errs []error
	for _, addr := range addrs {
		err := cl.Do(ctx, method, addr, path, body, out, timeout)
		if err == nil {
			c.good = addr
			return nil
		}
		if len(addrs) == 1 || ctx.Err() != nil || !tryNext(method, err) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no address of --addr %s answered: %w", strings.Join(addrs, ","), errors.Join(errs...))
}

// callAt sends one read to a given address (a member's API address).
func (c *cli) callAt(ctx context.Context, addr, path string, out any) error {
	cl, err := c.client(false)
	if err != nil {
		return err
	}
	return cl.Do(ctx, http.MethodGet, addr, path, nil, out, c.timeout)
}

func tryNext(method string, err error) bool {
	if api.StatusCode(err) != 0 {
		return false // the node answered
	}
	if method == http.MethodGet {
		return true
	}
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}
