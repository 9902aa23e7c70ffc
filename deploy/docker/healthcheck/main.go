// Command regdns-healthcheck is the HEALTHCHECK of the regdns container image.
// The image is distroless (no shell, curl or wget) and main.go's subcommands
// all serve or talk to Redis, so this small separate binary does the one
// thing a container health check needs: GET one URL and exit 0 on a 2xx
// answer, 1 on anything else.
//
//	regdns-healthcheck [-timeout 2s] [URL]
//
// Without a URL it checks /healthz on the HTTP address regdns serve listens
// on: REGDNS_HTTP_LISTEN (an unspecified host such as 0.0.0.0 is reached on
// loopback), or 127.0.0.1:9153, the default of http.listen. It speaks just
// enough HTTP/1.1 to read a status line, so it stays a fraction of the size
// of a net/http client.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

const defaultListen = "127.0.0.1:9153"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("regdns-healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "bound on connect, request and response together")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: regdns-healthcheck [-timeout 2s] [URL]\n\n"+
			"GETs URL (default: http://<REGDNS_HTTP_LISTEN or %s>/healthz) and\n"+
			"exits 0 on a 2xx status, 1 otherwise.\n\n", defaultListen)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	target := defaultURL(getenv("REGDNS_HTTP_LISTEN"))
	if fs.NArg() == 1 {
		target = fs.Arg(0)
	}
	status, err := check(target, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "regdns-healthcheck: %s: %v\n", target, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", target, status)
	return 0
}

// defaultURL is the /healthz URL of an http.listen address. A server that
// listens on every address is reached on loopback.
func defaultURL(listen string) string {
	if listen == "" {
		listen = defaultListen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/healthz" // check reports what is wrong
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// check sends GET target and returns the status ("200 OK") when it is 2xx.
func check(target string, timeout time.Duration) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" || u.Host == "" {
		return "", errors.New("want an http://host:port/path URL")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	deadline := time.Now().Add(timeout)
	conn, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return "", err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUser-Agent: regdns-healthcheck\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read status line: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	proto, status, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 {
		return "", fmt.Errorf("not an HTTP/1 response: %q", line)
	}
	if code[0] != '2' {
		return "", fmt.Errorf("status %s", status)
	}
	return status, nil
}
