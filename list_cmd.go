package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/regdns/regdns/registry"
)

// listCmd is `regdns list [-o table|json] [SERVICE]`: every instance id in
// the registry (or in one service) with its address, health, heartbeat age,
// key TTL and whether it is live, expired or malformed. It only reads.
func listCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("list", stderr).redisFlag()
	format := f.fs.String("o", "table", "output format: table or json")
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "Usage: regdns list [flags] [SERVICE]\n\n")
		f.fs.PrintDefaults()
	}
	flagArgs, pos, err := splitPositional(f.fs, args)
	if err != nil {
		return err
	}
	cfg, err := f.load(flagArgs, getenv, nil)
	if err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("-o %q: want table or json", *format)
	}
	if len(pos) > 1 {
		return fmt.Errorf("at most one SERVICE, got %q", pos)
	}
	client, _, err := newRedisClient(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer client.Close()
	store := registry.NewStore(client, keysOf(cfg))
	names := pos
	if len(names) == 0 {
		if names, err = store.ServiceNames(ctx); err != nil {
			return err
		}
	}
	all, skipped, err := store.Snapshot(ctx, names)
	if err != nil {
		return err
	}
	rows := listRows(all, skipped, time.Now())
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	return writeTable(stdout, rows)
}

// Instance statuses of `regdns list`.
const (
	statusLive      = "live"      // the instance key holds a servable document
	statusExpired   = "expired"   // the id is in the set, its key is gone
	statusMalformed = "malformed" // the key (or the set) holds what no reader can serve
)

// listRow is one line of `regdns list`; its JSON form is the -o json output.
// Durations are seconds; null where they do not apply.
type listRow struct {
	Service  string          `json:"service"`
	Instance string          `json:"instance"`
	Address  string          `json:"address"`
	Host     string          `json:"host"`
	Port     int             `json:"port"`
	Metadata json.RawMessage `json:"metadata"`
	// Health is healthy, unhealthy or unknown (no health key, or one that
	// does not decode, which regdns reads as unknown too).
	Health      string `json:"health"`
	HealthError string `json:"health_error,omitempty"`
	// Age is the time since the instance's last_heartbeat.
	Age *float64 `json:"age"`
	// TTL is the time left on the instance key; null when the key is gone
	// or has no expiry.
	TTL    *float64 `json:"ttl"`
	Status string   `json:"status"`
	// Error says why a malformed entry cannot be served.
	Error string `json:"error,omitempty"`
}

// listRows turns what the store read into rows sorted by service, then
// instance id.
func listRows(all map[string][]registry.Entry, skipped map[string]error, now time.Time) []listRow {
	rows := []listRow{}
	for svc, err := range skipped {
		rows = append(rows, listRow{Service: svc, Health: registry.StatusUnknown.String(),
			Status: statusMalformed, Error: reason(err), Metadata: json.RawMessage("null")})
	}
	for svc, entries := range all {
		for _, e := range entries {
			rows = append(rows, entryRow(svc, e, now))
		}
	}
	slices.SortFunc(rows, func(a, b listRow) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Instance, b.Instance)
	})
	return rows
}

func entryRow(svc string, e registry.Entry, now time.Time) listRow {
	r := listRow{Service: svc, Instance: e.ID, Health: registry.StatusUnknown.String(), Metadata: json.RawMessage("null")}
	if e.HealthData != nil {
		if h, err := registry.DecodeHealth(e.HealthData); err != nil {
			r.HealthError = reason(err)
		} else {
			r.Health = h.Status.String()
		}
	}
	if e.TTL > 0 {
		r.TTL = secondsOf(e.TTL)
	}
	switch {
	case e.WrongType:
		r.Status, r.Error = statusMalformed, "instance key is not a string"
		return r
	case e.Data == nil:
		r.Status = statusExpired
		return r
	}
	in, err := registry.DecodeInstance(svc, e.ID, e.Data)
	if err != nil {
		r.Status, r.Error = statusMalformed, reason(err)
		return r
	}
	r.Status = statusLive
	r.Host, r.Port = in.Host, int(in.Port)
	r.Address = net.JoinHostPort(in.Host, strconv.Itoa(r.Port))
	if !in.LastHeartbeat.IsZero() {
		r.Age = secondsOf(now.Sub(in.LastHeartbeat))
	}
	var doc struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if json.Unmarshal(e.Data, &doc) == nil && len(doc.Metadata) > 0 {
		r.Metadata = doc.Metadata
	}
	return r
}

// reason is err without the ErrMalformed prefix every decoding error has.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), registry.ErrMalformed.Error()+": ")
}

// secondsOf is d in seconds, to the millisecond.
func secondsOf(d time.Duration) *float64 {
	s := math.Round(d.Seconds()*1000) / 1000
	return &s
}

func writeTable(w io.Writer, rows []listRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tADDRESS\tHEALTH\tAGE\tTTL\tSTATUS")
	for _, r := range rows {
		health := r.Health
		if r.HealthError != "" {
			health += " (bad health key)"
		}
		status := r.Status
		if r.Error != "" {
			status += ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, dash(r.Instance), dash(r.Address),
			health, humanSeconds(r.Age), humanSeconds(r.TTL), status)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanSeconds prints a duration in seconds as 3s, 1m20s or 2h0m5s.
func humanSeconds(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s * float64(time.Second))).Round(time.Second).String()
}

// splitPositional parses args with fs and separates the flags from the
// positional arguments, which may come before, between or after flags
// (`list -o json svc` and `list svc -o json` alike); everything after "--"
// is positional. The flag arguments it returns parse again to the same
// values, for commonFlags.load, which accepts no positional arguments.
func splitPositional(fs *flag.FlagSet, args []string) (flags, pos []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		rest := fs.Args()
		consumed := args[:len(args)-len(rest)]
		if n := len(consumed); n > 0 && consumed[n-1] == "--" {
			return append(flags, consumed[:n-1]...), append(pos, rest...), nil
		}
		flags = append(flags, consumed...)
		if len(rest) == 0 {
			return flags, pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
