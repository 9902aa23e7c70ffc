package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Dependencies point one way (shared/STYLE.md section 3): dns knows nothing
// of Redis, registry nothing of DNS, config nothing of ours.
func TestPackageDependenciesPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "./...").Output()
	require.NoError(t, err)
	const mod = "github.com/regdns/regdns/"
	forbidden := map[string][]string{
		mod + "dns":               {"github.com/redis/go-redis", mod + "health", mod + "internal/config", "github.com/prometheus"},
		mod + "registry":          {"github.com/miekg/dns", mod + "dns", mod + "health", mod + "internal/config", "github.com/prometheus"},
		mod + "health":            {"github.com/miekg/dns", mod + "dns", mod + "internal/config"},
		mod + "internal/config":   {mod},
		mod + "internal/balance":  {mod},
		mod + "internal/devredis": {mod + "dns", mod + "health"},
		// admin consumes interfaces main adapts; the counters are atomics
		// where things happen, and only admin knows Prometheus.
		mod + "internal/admin": {mod},
	}
	seen := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		for _, imp := range strings.Fields(imports) {
			for _, bad := range forbidden[pkg] {
				require.False(t, strings.HasPrefix(imp, bad), "%s must not import %s", pkg, imp)
			}
		}
		if _, ok := forbidden[pkg]; ok {
			seen++
		}
	}
	require.GreaterOrEqual(t, seen, 6, "packages checked")
}
