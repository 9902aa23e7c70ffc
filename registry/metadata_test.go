package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMetadata(t *testing.T) {
	m := MetadataOf(map[string]string{"version": "1.0.0", "region": "eu", "empty": ""})
	require.Equal(t, Metadata{{"empty", ""}, {"region", "eu"}, {"version", "1.0.0"}}, m, "sorted by key")
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"region", "eu", true},
		{"version", "1.0.0", true},
		{"empty", "", true},
		{"Region", "", false}, // keys are case-sensitive, as in the JSON document
		{"zone", "", false},
		{"", "", false},
	} {
		got, ok := m.Lookup(tc.key)
		require.Equal(t, tc.want, got, tc.key)
		require.Equal(t, tc.ok, ok, tc.key)
		require.Equal(t, tc.want, m.Get(tc.key), tc.key)
	}
	require.Equal(t, map[string]string{"version": "1.0.0", "region": "eu", "empty": ""}, m.Map())
	require.Nil(t, MetadataOf(nil))
	require.Empty(t, Metadata(nil).Get("x"))
	require.Equal(t, map[string]string{}, Metadata(nil).Map())
}
