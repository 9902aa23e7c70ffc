package dns

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"user-service", true},
		{"User_Service-2", true},
		{"_grpc", true},
		{"a", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"a.b", false},
		{"a b", false},
		{"a/b", false},
		{"a\\046b", false},
		{"café", false},
		{"a\x00", false},
	} {
		require.Equal(t, tc.want, validLabel(tc.s), "%q", tc.s)
	}
}

func TestSplitRelative(t *testing.T) {
	t.Parallel()
	const zone = "service.local."
	for _, tc := range []struct {
		qname  string
		labels []string
		ok     bool
	}{
		{"service.local.", nil, true},
		{"web.service.local.", []string{"web"}, true},
		{"i1.web.service.local.", []string{"i1", "web"}, true},
		{"_web._tcp.service.local.", []string{"_web", "_tcp"}, true},
		{"a.b.c.service.local.", []string{"a", "b", "c"}, true},
		{"local.", nil, false},
		{".", nil, false},
		{"xservice.local.", nil, false},
		{"web.service.local.example.", nil, false},
		{".service.local.", nil, false},
	} {
		labels, ok := splitRelative(tc.qname, zone)
		require.Equal(t, tc.ok, ok, "%q", tc.qname)
		require.Equal(t, tc.labels, labels, "%q", tc.qname)
	}
}

func TestFold(t *testing.T) {
	t.Parallel()
	require.Equal(t, "user-service", fold("User-SERVICE"))
	require.Equal(t, fold("ABC_def-1"), fold("abc_DEF-1"))
}
