package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeysNames(t *testing.T) {
	k := DefaultKeys()
	require.Equal(t, "services:user-service", k.Set("user-service"))
	require.Equal(t, "services:user-service:instances:5b0c-1", k.Instance("user-service", "5b0c-1"))
	require.Equal(t, "services:user-service:events", k.Events("user-service"))
	require.Equal(t, "health:user-service:5b0c-1", k.Health("user-service", "5b0c-1"))
	require.Equal(t, "services:*:events", k.EventsPattern())
	require.Equal(t, "services:*", k.SetPattern())
	require.Equal(t, "health:*", k.HealthPattern())

	custom := Keys{Prefix: "svc", HealthPrefix: "hc"}
	require.Equal(t, "svc:a", custom.Set("a"))
	require.Equal(t, "svc:a:instances:i", custom.Instance("a", "i"))
	require.Equal(t, "svc:a:events", custom.Events("a"))
	require.Equal(t, "hc:a:i", custom.Health("a", "i"))
}

func TestKeysParse(t *testing.T) {
	k := DefaultKeys()
	tests := []struct {
		key     string
		kind    KeyKind
		service string
		id      string
	}{
		{"services:user-service", KindSet, "user-service", ""},
		{"services:user-service:instances:5b0c-1", KindInstance, "user-service", "5b0c-1"},
		{"health:user-service:5b0c-1", KindHealth, "user-service", "5b0c-1"},
		// Service names may contain ':'; ids may not.
		{"services:team:api", KindSet, "team:api", ""},
		{"services:team:api:instances:id1", KindInstance, "team:api", "id1"},
		{"health:team:api:id1", KindHealth, "team:api", "id1"},
		{"services:a:instances:b:instances:c", KindInstance, "a:instances:b", "c"},
		{"services:a:instances:b:c", KindOther, "", ""}, // id with ':'
		{"services:a:instances:", KindOther, "", ""},    // empty id
		// Not registry keys.
		{"services:user-service:events", KindOther, "", ""},
		{"mesh:routes:a:b", KindOther, "", ""},
		{"mesh:metrics:user-service", KindOther, "", ""},
		{"services:", KindOther, "", ""},
		{"services", KindOther, "", ""},
		{"health:", KindOther, "", ""},
		{"health:svc", KindOther, "", ""},
		{"health:svc:", KindOther, "", ""},
		{"health::id", KindOther, "", ""},
		{"", KindOther, "", ""},
		{"Services:user-service", KindOther, "", ""}, // keys are case-sensitive
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			kind, service, id := k.Parse(tc.key)
			require.Equal(t, tc.kind, kind, "kind of %q", tc.key)
			require.Equal(t, tc.service, service, "service of %q", tc.key)
			require.Equal(t, tc.id, id, "id of %q", tc.key)
		})
	}
}

// TestKeysRoundTrip checks that Parse inverts the key constructors for
// service names with ':' in them.
func TestKeysRoundTrip(t *testing.T) {
	k := DefaultKeys()
	for _, svc := range []string{"user-service", "a:b", "a:b:c", "UPPER", "x.y_z"} {
		kind, s, id := k.Parse(k.Set(svc))
		require.Equal(t, KindSet, kind, svc)
		require.Equal(t, svc, s)
		require.Empty(t, id)

		kind, s, id = k.Parse(k.Instance(svc, "5b0c-uuid"))
		require.Equal(t, KindInstance, kind, svc)
		require.Equal(t, svc, s)
		require.Equal(t, "5b0c-uuid", id)

		kind, s, id = k.Parse(k.Health(svc, "5b0c-uuid"))
		require.Equal(t, KindHealth, kind, svc)
		require.Equal(t, svc, s)
		require.Equal(t, "5b0c-uuid", id)

		kind, _, _ = k.Parse(k.Events(svc))
		require.Equal(t, KindOther, kind, "events channel of %q", svc)

		got, ok := k.ServiceOfChannel(k.Events(svc))
		require.True(t, ok, svc)
		require.Equal(t, svc, got)
	}
}

func TestKeysServiceOfChannel(t *testing.T) {
	k := DefaultKeys()
	tests := []struct {
		channel string
		service string
		ok      bool
	}{
		{"services:user-service:events", "user-service", true},
		{"services:a:b:events", "a:b", true},
		{"services::events", "", false},
		{"services:events", "", false},
		{"services:user-service", "", false},
		{"mesh:user-service:events", "", false},
		{"__keyspace@0__:services:user-service", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.channel, func(t *testing.T) {
			got, ok := k.ServiceOfChannel(tc.channel)
			require.Equal(t, tc.ok, ok, "ServiceOfChannel(%q)", tc.channel)
			if ok {
				require.Equal(t, tc.service, got)
			}
		})
	}
}
