package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
)

// ErrNoDaemon is returned when nothing answers on the control socket.
var ErrNoDaemon = errors.New("no lockstep daemon answers")

// Client talks to a daemon's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the socket path. It connects lazily.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Status fetches the daemon's status, restricted to folder when not empty.
func (c *Client) Status(ctx context.Context, folder string) (Status, error) {
	var st Status
	q := url.Values{}
	if folder != "" {
		q.Set("folder", folder)
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/status?"+q.Encode(), nil, &st)
	return st, err
}

// Conflicts lists the conflict losers kept by the daemon.
func (c *Client) Conflicts(ctx context.Context, folder string) ([]Conflict, error) {
	var list []Conflict
	q := url.Values{}
	if folder != "" {
		q.Set("folder", folder)
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/conflicts?"+q.Encode(), nil, &list)
	return list, err
}

// Wait blocks until the paths are committed or the request's timeout
// passes; a timeout is not an error: the response says what is missing.
func (c *Client) Wait(ctx context.Context, req WaitRequest) (WaitResponse, error) {
	var resp WaitResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/wait", body, &resp)
	return resp, err
}

// Resume asks the daemon to re-check paused folders.
func (c *Client) Resume(ctx context.Context, req ResumeRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var out struct{}
	_, err = c.do(ctx, http.MethodPost, "/v1/resume", body, &out)
	return err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://lockstep"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, fmt.Errorf("%w on %s (is 'lockstep run' running with this configuration?)", ErrNoDaemon, c.socket)
		}
		return 0, fmt.Errorf("control socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("control socket %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGatewayTimeout {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return resp.StatusCode, errors.New(eb.Error)
		}
		return resp.StatusCode, fmt.Errorf("control socket %s: HTTP %d", c.socket, resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("control socket %s: bad answer: %w", c.socket, err)
	}
	return resp.StatusCode, nil
}

// Resync starts a resync; progress shows in the folders' status.
func (c *Client) Resync(ctx context.Context, req ResyncRequest) (ResyncResponse, error) {
	var resp ResyncResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/resync", body, &resp)
	return resp, err
}
