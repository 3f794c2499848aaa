package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// The API's paths.
const (
	PathStatus      = "/v1/status"
	PathMembers     = "/v1/members"
	PathJournal     = "/v1/journal"
	PathNode        = "/v1/node"
	PathPropose     = "/v1/propose"
	PathRenew       = "/v1/renew"
	PathSwitchover  = "/v1/switchover"
	PathMaintenance = "/v1/maintenance"
	PathGoodbye     = "/v1/goodbye"
	PathPause       = "/v1/pause"
	PathFailover    = "/v1/failover"
	PathRejoin      = "/v1/rejoin"
	PathConfig      = "/v1/config"
	PathMetrics     = "/metrics"
)

// The default client's pool: a few idle connections per peer, closed after idleTimeout.
const (
	idlePerHost = 4
	idleTimeout = 30 * time.Second
)

// maxAnswer bounds how much of an answer the client reads (a full journal is the largest).
const maxAnswer = 64 << 20

// Error is a non-2xx answer. Propose is set when the body was a [ProposeResponse] (a
// committed event that was stale, skipped or invalid).
type Error struct {
	Method, Addr, Path string
	Code               int
	Msg                string
	Propose            *ProposeResponse
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Propose != nil && msg == "" {
		msg = fmt.Sprintf("event %d was %s: %s", e.Propose.Index, e.Propose.Result, e.Propose.Error)
	}
	return fmt.Sprintf("%s %s%s: %d %s: %s", e.Method, e.Addr, e.Path, e.Code, http.StatusText(e.Code), msg)
}

// StatusCode returns the HTTP status of err when it is an [*Error], else 0.
func StatusCode(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return 0
}

// Client calls a node's admin API. It is safe for concurrent use.
type Client struct {
	http   *http.Client
	token  string
	scheme string
}

// NewClient returns a client that sends token (when not empty) as the bearer token. A
// nil hc gets a client with a small idle pool suited to polling a few peers.
func NewClient(token string, hc *http.Client) *Client {
	if hc == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: idlePerHost, IdleConnTimeout: idleTimeout, DisableCompression: true}
		hc = &http.Client{Transport: tr}
	}
	return &Client{http: hc, token: token, scheme: "http"}
}

// NewTLSClient is NewClient for an API served over HTTPS: hc must carry the TLS
// configuration (the client certificate and the CA).
func NewTLSClient(token string, hc *http.Client) *Client {
	c := NewClient(token, hc)
	c.scheme = "https"
	return c
}

// Do sends in (JSON, when not nil) to addr's path and decodes a 2xx answer into out
// (when not nil). A timeout > 0 bounds the call.
func (c *Client) Do(ctx context.Context, method, addr, path string, in, out any, timeout time.Duration) error {
	if addr == "" {
		return fmt.Errorf("%s %s: no API address", method, path)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+addr+path, body)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, addr, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, addr, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s%s: read answer: %w", method, addr, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Method: method, Addr: addr, Path: path, Code: resp.StatusCode}
		var er ErrorResponse
		var pr ProposeResponse
		switch {
		case json.Unmarshal(b, &er) == nil && er.Error != "":
			e.Msg = er.Error
		case json.Unmarshal(b, &pr) == nil && pr.Result != "":
			e.Propose = &pr
		default:
			e.Msg = strings.TrimSpace(string(b))
		}
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s%s: decode answer: %w", method, addr, path, err)
	}
	return nil
}

// Status reads GET /v1/status.
func (c *Client) Status(ctx context.Context, addr string, timeout time.Duration) (Status, error) {
	var st Status
	err := c.Do(ctx, http.MethodGet, addr, PathStatus, nil, &st, timeout)
	return st, err
}

// Members reads GET /v1/members.
func (c *Client) Members(ctx context.Context, addr string, timeout time.Duration) ([]MemberStatus, error) {
	var ms []MemberStatus
	err := c.Do(ctx, http.MethodGet, addr, PathMembers, nil, &ms, timeout)
	return ms, err
}

// Journal reads the records after since; wait > 0 long-polls until one exists.
func (c *Client) Journal(ctx context.Context, addr string, since uint64, wait, timeout time.Duration) (JournalResponse, error) {
	q := url.Values{}
	q.Set("since", strconv.FormatUint(since, 10))
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var jr JournalResponse
	err := c.Do(ctx, http.MethodGet, addr, PathJournal+"?"+q.Encode(), nil, &jr, timeout)
	return jr, err
}

// Node reads a peer's GET /v1/node report.
func (c *Client) Node(ctx context.Context, addr string, timeout time.Duration) (NodeReport, error) {
	var r NodeReport
	err := c.Do(ctx, http.MethodGet, addr, PathNode, nil, &r, timeout)
	return r, err
}

// ExchangeNode sends this node's report to a peer (POST /v1/node) and returns the
// peer's: one round trip serves both sides' polls. A peer from before the exchange
// answers 405 (see [IsMethodNotAllowed]).
func (c *Client) ExchangeNode(ctx context.Context, addr string, mine NodeReport, timeout time.Duration) (NodeReport, error) {
	var r NodeReport
	err := c.Do(ctx, http.MethodPost, addr, PathNode, mine, &r, timeout)
	return r, err
}

// IsMethodNotAllowed reports whether err is a peer's 405: it does not serve that method
// on the path (an older version).
func IsMethodNotAllowed(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Code == http.StatusMethodNotAllowed
}

// Propose forwards ev to the leader at addr.
func (c *Client) Propose(ctx context.Context, addr string, ev fsm.Event, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathPropose, ev, &pr, timeout)
	return pr, err
}

// Renew asks the peer at addr to promise req's owner and epoch.
func (c *Client) Renew(ctx context.Context, addr string, req RenewRequest, timeout time.Duration) (RenewResponse, error) {
	var rr RenewResponse
	err := c.Do(ctx, http.MethodPost, addr, PathRenew, req, &rr, timeout)
	return rr, err
}

// Switchover asks for a planned handover.
func (c *Client) Switchover(ctx context.Context, addr string, req fsm.SwitchoverData, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathSwitchover, req, &pr, timeout)
	return pr, err
}

// Maintenance turns a node's maintenance on or off.
func (c *Client) Maintenance(ctx context.Context, addr string, req fsm.MaintenanceData, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathMaintenance, req, &pr, timeout)
	return pr, err
}

// Pause pauses (req.Paused) or resumes automatic failover.
func (c *Client) Pause(ctx context.Context, addr string, req fsm.PauseData, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathPause, req, &pr, timeout)
	return pr, err
}

// Failover asks for an operator's failover to req.To. Without req.Yes nothing is
// committed: the answer is 412 with the loss note to accept.
func (c *Client) Failover(ctx context.Context, addr string, req FailoverRequest, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathFailover, req, &pr, timeout)
	return pr, err
}

// RejoinResume resumes a blocked rejoin of req.Node (accepting req.Accept when set).
func (c *Client) RejoinResume(ctx context.Context, addr string, req fsm.RejoinResumeData, timeout time.Duration) (ProposeResponse, error) {
	var pr ProposeResponse
	err := c.Do(ctx, http.MethodPost, addr, PathRejoin, req, &pr, timeout)
	return pr, err
}

// Goodbye tells the peer at addr that node is stopping gracefully.
func (c *Client) Goodbye(ctx context.Context, addr, node string, timeout time.Duration) error {
	return c.Do(ctx, http.MethodPost, addr, PathGoodbye, GoodbyeRequest{Node: node}, nil, timeout)
}
