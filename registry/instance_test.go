package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// referenceDoc is the instance document of registry-format.md, as the
// reference Python ServiceRegistry writes it.
const referenceDoc = `{"service_name": "user-service", "instance_id": "5b0c-uuid4", "host": "10.0.0.12",
 "port": 8080, "metadata": {"version": "1.0.0", "region": "us-east-1", "weight": 3},
 "registered_at": 1764090000.123, "last_heartbeat": 1764090010.456}`

func TestDecodeInstanceReference(t *testing.T) {
	in, err := DecodeInstance("user-service", "5b0c-uuid4", []byte(referenceDoc))
	require.NoError(t, err)
	require.Equal(t, "user-service", in.Service)
	require.Equal(t, "5b0c-uuid4", in.ID)
	require.Equal(t, "10.0.0.12", in.Host)
	require.Equal(t, netip.MustParseAddr("10.0.0.12"), in.Addr)
	require.False(t, in.IsName())
	require.Equal(t, uint16(8080), in.Port)
	require.Equal(t, uint16(3), in.Weight)
	require.Equal(t, uint16(1), in.Priority)
	require.Equal(t, map[string]string{"version": "1.0.0", "region": "us-east-1", "weight": "3"}, in.Meta.Map())
	require.Nil(t, in.Tags)
	require.WithinDuration(t, time.UnixMilli(1764090000123), in.RegisteredAt, time.Millisecond)
	require.WithinDuration(t, time.UnixMilli(1764090010456), in.LastHeartbeat, time.Millisecond)
	require.Equal(t, StatusUnknown, in.Health.Status)
}

// TestDecodeInstanceKeyIDWins checks that the set member, not the
// document's instance_id, names the instance.
func TestDecodeInstanceKeyIDWins(t *testing.T) {
	in, err := DecodeInstance("svc", "from-key", []byte(`{"instance_id":"from-doc","host":"10.0.0.1","port":80}`))
	require.NoError(t, err)
	require.Equal(t, "from-key", in.ID)
	require.Equal(t, "svc", in.Service)
}

// doc builds an instance document with the given JSON for host, port and
// metadata; an empty string leaves the field out.
func doc(host, port, meta string) []byte {
	var fields []string
	if host != "" {
		fields = append(fields, `"host":`+host)
	}
	if port != "" {
		fields = append(fields, `"port":`+port)
	}
	if meta != "" {
		fields = append(fields, `"metadata":`+meta)
	}
	return []byte("{" + strings.Join(fields, ",") + "}")
}

func TestDecodeInstanceWeightPriority(t *testing.T) {
	tests := []struct {
		name     string
		meta     string
		weight   uint16
		priority uint16
	}{
		{"no metadata", "", 1, 1},
		{"empty metadata", `{}`, 1, 1},
		{"null metadata", `null`, 1, 1},
		{"number", `{"weight": 3}`, 3, 1},
		{"string", `{"weight": "3"}`, 3, 1},
		{"string with spaces", `{"weight": " 3 "}`, 3, 1},
		{"float", `{"weight": 3.0}`, 3, 1},
		{"fraction rounds", `{"weight": 2.5}`, 3, 1},
		{"exponent", `{"weight": 1e2}`, 100, 1},
		{"zero", `{"weight": 0}`, 0, 1},
		{"negative clamps to 0", `{"weight": -1}`, 0, 1},
		{"too large clamps to 65535", `{"weight": 70000}`, 65535, 1},
		{"huge clamps to 65535", `{"weight": 1e300}`, 65535, 1},
		{"not a number", `{"weight": "abc"}`, 1, 1},
		{"NaN string", `{"weight": "NaN"}`, 1, 1},
		{"Inf string", `{"weight": "Infinity"}`, 1, 1},
		{"null", `{"weight": null}`, 1, 1},
		{"bool", `{"weight": true}`, 1, 1},
		{"object", `{"weight": {"v": 3}}`, 1, 1},
		{"priority", `{"priority": 10}`, 1, 10},
		{"priority string", `{"priority": "20", "weight": "5"}`, 5, 20},
		{"priority negative", `{"priority": -5}`, 1, 0},
		{"priority garbage", `{"priority": "high"}`, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInstance("svc", "id", doc(`"10.0.0.1"`, `80`, tc.meta))
			require.NoError(t, err)
			require.Equal(t, tc.weight, in.Weight, "weight")
			require.Equal(t, tc.priority, in.Priority, "priority")
		})
	}
}

func TestDecodeInstancePort(t *testing.T) {
	tests := []struct {
		name string
		port string // JSON; "" leaves the field out
		want uint16 // 0: rejected
	}{
		{"number", `8080`, 8080},
		{"string", `"8080"`, 8080},
		{"string with spaces", `" 8080 "`, 8080},
		{"float with zero fraction", `8080.0`, 8080},
		{"exponent", `8e3`, 8000},
		{"one", `1`, 1},
		{"max", `65535`, 65535},
		{"zero", `0`, 0},
		{"negative", `-1`, 0},
		{"too large", `65536`, 0},
		{"fraction", `1.5`, 0},
		{"string fraction", `"1.5"`, 0},
		{"missing", ``, 0},
		{"null", `null`, 0},
		{"empty string", `""`, 0},
		{"not a number", `"http"`, 0},
		{"NaN string", `"NaN"`, 0},
		{"Inf string", `"Inf"`, 0},
		{"bool", `true`, 0},
		{"list", `[8080]`, 0},
		{"object", `{"port": 8080}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInstance("svc", "id", doc(`"10.0.0.1"`, tc.port, ""))
			if tc.want == 0 {
				require.Error(t, err, "port %s", tc.port)
				require.True(t, errors.Is(err, ErrMalformed), "errors.Is(%v, ErrMalformed)", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, in.Port)
		})
	}
}

func TestDecodeInstanceHost(t *testing.T) {
	tests := []struct {
		name   string
		host   string // JSON; "" leaves the field out
		ok     bool
		addr   string // expected Addr; "" when the host is a name
		isName bool
	}{
		{"IPv4", `"10.0.0.12"`, true, "10.0.0.12", false},
		{"IPv6", `"2001:db8::1"`, true, "2001:db8::1", false},
		{"IPv6 loopback", `"::1"`, true, "::1", false},
		{"IPv4-mapped IPv6 is unmapped", `"::ffff:10.0.0.12"`, true, "10.0.0.12", false},
		{"host name", `"api.example.org"`, true, "", true},
		{"host name with trailing dot", `"api.example.org."`, true, "", true},
		{"single label", `"localhost"`, true, "", true},
		{"underscore and hyphen", `"my_host-1.example.org"`, true, "", true},
		{"upper case name", `"API.Example.ORG"`, true, "", true},
		{"not a host", `"not a host!"`, false, "", false},
		{"empty", `""`, false, "", false},
		{"missing", ``, false, "", false},
		{"null", `null`, false, "", false},
		{"number", `10`, false, "", false},
		{"zone", `"fe80::1%eth0"`, false, "", false},
		{"empty label", `"a..b"`, false, "", false},
		{"only a dot", `"."`, false, "", false},
		{"label too long", `"` + strings.Repeat("a", 64) + `.example.org"`, false, "", false},
		{"name too long", `"` + strings.Repeat("abcdefg.", 32) + `org"`, false, "", false},
		{"url", `"http://10.0.0.1"`, false, "", false},
		{"host:port", `"10.0.0.1:80"`, false, "", false},
		{"non-ASCII", `"bücher.example"`, false, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInstance("svc", "id", doc(tc.host, `80`, ""))
			if !tc.ok {
				require.Error(t, err, "host %s", tc.host)
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.NotEmpty(t, in.Host)
			require.Equal(t, tc.isName, in.IsName(), "IsName")
			if tc.addr != "" {
				require.Equal(t, netip.MustParseAddr(tc.addr), in.Addr)
			} else {
				require.False(t, in.Addr.IsValid())
			}
		})
	}
}

func TestDecodeInstanceIPv4MappedKeepsHost(t *testing.T) {
	in, err := DecodeInstance("svc", "id", doc(`"::ffff:10.0.0.12"`, `80`, ""))
	require.NoError(t, err)
	require.Equal(t, "::ffff:10.0.0.12", in.Host, "Host is kept as written")
	require.True(t, in.Addr.Is4(), "Addr %v is unmapped to IPv4", in.Addr)
}

func TestDecodeInstanceMalformedDocument(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"invalid JSON", []byte(`{"host": "10.0.0.1", "port": 80`)},
		{"not JSON", []byte(`host=10.0.0.1 port=80`)},
		{"empty", []byte(``)},
		{"nil", nil},
		{"JSON array", []byte(`[{"host": "10.0.0.1", "port": 80}]`)},
		{"JSON string", []byte(`"10.0.0.1:80"`)},
		{"JSON number", []byte(`8080`)},
		{"JSON null", []byte(`null`)},
		{"empty object", []byte(`{}`)},
		{"metadata not an object", doc(`"10.0.0.1"`, `80`, `"weight=3"`)},
		{"over 64 KiB", oversized(MaxDocumentSize + 1)},
		{"1 MiB", oversized(1 << 20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInstance("svc", "id", tc.data)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrMalformed)
			// The error names the instance it came from only through the
			// caller, but the returned value still carries the key's names.
			require.Equal(t, "svc", in.Service)
			require.Equal(t, "id", in.ID)
		})
	}
}

// oversized returns a valid instance document of exactly n bytes, padded
// with a long metadata value.
func oversized(n int) []byte {
	head := `{"host":"10.0.0.1","port":80,"metadata":{"pad":"`
	tail := `"}}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func TestDecodeInstanceSizeLimit(t *testing.T) {
	data := oversized(MaxDocumentSize)
	require.Len(t, data, MaxDocumentSize)
	_, err := DecodeInstance("svc", "id", data)
	require.NoError(t, err, "a document of exactly MaxDocumentSize bytes is accepted")

	data = oversized(MaxDocumentSize + 1)
	_, err = DecodeInstance("svc", "id", data)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestDecodeInstanceManyMetadataKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"host":"10.0.0.1","port":80,"metadata":{`)
	for i := range 2000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString(`}}`)
	in, err := DecodeInstance("svc", "id", []byte(b.String()))
	require.NoError(t, err)
	require.Len(t, in.Meta, 2000)
	require.Equal(t, "1999", in.Meta.Get("k1999"))
}

func TestDecodeInstanceMetadataText(t *testing.T) {
	meta := `{"version": "1.0.0", "canary": true, "off": false, "weight": 3, "ratio": 0.25,
		"nothing": null, "nested": {"a":1,"b":[1,2]}, "list": ["x","y"], "empty": "",
		"tags": ["blue", "eu"], "health_path": "/healthz"}`
	in, err := DecodeInstance("svc", "id", doc(`"10.0.0.1"`, `80`, meta))
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"version":     "1.0.0",
		"canary":      "true",
		"off":         "false",
		"weight":      "3",
		"ratio":       "0.25",
		"nothing":     "", // null is no value
		"nested":      `{"a":1,"b":[1,2]}`,
		"list":        `["x","y"]`,
		"empty":       "",
		"tags":        `["blue", "eu"]`,
		"health_path": "/healthz",
	}, in.Meta.Map())
	require.Equal(t, []string{"blue", "eu"}, in.Tags)
}

func TestDecodeInstanceTags(t *testing.T) {
	tests := []struct {
		name string
		meta string
		want []string
	}{
		{"list of strings", `{"tags": ["a", "b"]}`, []string{"a", "b"}},
		{"empty list", `{"tags": []}`, []string{}},
		{"absent", `{"weight": 1}`, nil},
		{"a string", `{"tags": "a,b"}`, nil},
		{"mixed list", `{"tags": ["a", 1]}`, nil},
		{"null", `{"tags": null}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInstance("svc", "id", doc(`"10.0.0.1"`, `80`, tc.meta))
			require.NoError(t, err)
			require.Equal(t, tc.want, in.Tags)
		})
	}
}

func TestDecodeInstanceTimes(t *testing.T) {
	tests := []struct {
		name string
		json string
		want time.Time
	}{
		{"seconds", `1764090000`, time.Unix(1764090000, 0)},
		{"string", `"1764090000"`, time.Unix(1764090000, 0)},
		{"missing", ``, time.Time{}},
		{"zero", `0`, time.Time{}},
		{"negative", `-5`, time.Time{}},
		{"milliseconds by mistake", `1764090000123`, time.Time{}},
		{"garbage", `"yesterday"`, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := `{"host":"10.0.0.1","port":80`
			if tc.json != "" {
				data += `,"registered_at":` + tc.json + `,"last_heartbeat":` + tc.json
			}
			in, err := DecodeInstance("svc", "id", []byte(data+"}"))
			require.NoError(t, err, "times never make an instance malformed")
			require.True(t, tc.want.Equal(in.RegisteredAt), "RegisteredAt = %v, want %v", in.RegisteredAt, tc.want)
			require.True(t, tc.want.Equal(in.LastHeartbeat), "LastHeartbeat = %v, want %v", in.LastHeartbeat, tc.want)
		})
	}
}

func TestInstanceSameServing(t *testing.T) {
	base := func() Instance {
		in, err := DecodeInstance("svc", "id", []byte(referenceDoc))
		require.NoError(t, err)
		return in
	}
	a, b := base(), base()
	b.LastHeartbeat = b.LastHeartbeat.Add(10 * time.Second)
	b.RegisteredAt = time.Time{}
	require.True(t, a.sameServing(&b), "heartbeat times are not a change")

	for name, mutate := range map[string]func(*Instance){
		"id":        func(in *Instance) { in.ID = "other" },
		"host":      func(in *Instance) { in.Host = "10.0.0.13" },
		"port":      func(in *Instance) { in.Port++ },
		"weight":    func(in *Instance) { in.Weight++ },
		"priority":  func(in *Instance) { in.Priority++ },
		"health":    func(in *Instance) { in.Health.Status = StatusHealthy },
		"meta":      func(in *Instance) { in.Meta = MetadataOf(map[string]string{"version": "2"}) },
		"meta more": func(in *Instance) { in.Meta = MetadataOf(map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}) },
	} {
		c := base()
		mutate(&c)
		require.False(t, a.sameServing(&c), "a change of %s is a change", name)
	}
}

func TestDecodeHealth(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		status  Status
		checked time.Time
		err     bool
	}{
		{"healthy", `{"status": "healthy", "checked_at": 1764090000.5}`, StatusHealthy, time.Unix(1764090000, 5e8), false},
		{"unhealthy", `{"status": "unhealthy", "checked_at": 1764090000}`, StatusUnhealthy, time.Unix(1764090000, 0), false},
		{"unknown", `{"status": "unknown", "checked_at": 1764090000}`, StatusUnknown, time.Unix(1764090000, 0), false},
		{"upper case", `{"status": "HEALTHY"}`, StatusHealthy, time.Time{}, false},
		{"garbage status", `{"status": "fine, thanks"}`, StatusUnknown, time.Time{}, false},
		{"status not a string", `{"status": 1}`, 0, time.Time{}, true},
		{"no status", `{"checked_at": 1764090000}`, StatusUnknown, time.Unix(1764090000, 0), false},
		{"empty object", `{}`, StatusUnknown, time.Time{}, false},
		{"invalid JSON", `{"status": "healthy"`, 0, time.Time{}, true},
		{"JSON array", `["healthy"]`, 0, time.Time{}, true},
		{"plain text", `healthy`, 0, time.Time{}, true},
		{"empty", ``, 0, time.Time{}, true},
		{"oversized", `{"status":"healthy","pad":"` + strings.Repeat("x", MaxDocumentSize) + `"}`, 0, time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := DecodeHealth([]byte(tc.data))
			if tc.err {
				require.Error(t, err)
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.status, h.Status)
			require.True(t, tc.checked.Equal(h.CheckedAt), "CheckedAt = %v, want %v", h.CheckedAt, tc.checked)
		})
	}
}

func TestStatusString(t *testing.T) {
	require.Equal(t, "healthy", StatusHealthy.String())
	require.Equal(t, "unhealthy", StatusUnhealthy.String())
	require.Equal(t, "unknown", StatusUnknown.String())
	require.Equal(t, "unknown", Status(42).String())
}

func TestHealthModeServes(t *testing.T) {
	tests := []struct {
		mode                        HealthMode
		healthy, unknown, unhealthy bool
	}{
		{ModeHealthy, true, false, false},
		{ModeHealthyOrUnknown, true, true, false},
		{ModeAny, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			require.Equal(t, tc.healthy, tc.mode.Serves(StatusHealthy), "healthy")
			require.Equal(t, tc.unknown, tc.mode.Serves(StatusUnknown), "unknown")
			require.Equal(t, tc.unhealthy, tc.mode.Serves(StatusUnhealthy), "unhealthy")
		})
	}
}

func TestParseHealthMode(t *testing.T) {
	tests := []struct {
		in   string
		want HealthMode
		err  bool
	}{
		{"", ModeHealthy, false},
		{"healthy", ModeHealthy, false},
		{"healthy_or_unknown", ModeHealthyOrUnknown, false},
		{"any", ModeAny, false},
		{"Healthy", 0, true},
		{"unknown", 0, true},
		{"all", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHealthMode(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			if tc.in != "" {
				require.Equal(t, tc.in, got.String(), "String round-trips")
			}
		})
	}
}
