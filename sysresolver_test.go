package main

// Resolution by host name from programs that use the system resolver.
// regdns runs on port 53 inside a private network, mount and PID namespace
// (unshare --net --mount --pid), with a bind-mounted /etc/resolv.conf that
// says `nameserver 127.0.0.1`, and is queried through glibc getaddrinfo
// (getent ahosts), Go's resolver (net.Resolver, PreferGo) and Node's c-ares
// (dns.promises.resolveSrv). Needs root for the namespaces and port 53.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	// sysResolverHelperEnv makes TestSysResolverGoHelper, re-executed from
	// the test binary inside the namespace, do its lookups.
	sysResolverHelperEnv = "REGDNS_SYSRESOLVER_HELPER"
	// sysResolverNamesEnv lists the names the helper looks up.
	sysResolverNamesEnv = "REGDNS_SYSRESOLVER_NAMES"
	// sysResolverTimeout bounds the whole namespace script; it normally
	// takes a few seconds, but -race and a loaded machine slow it down.
	sysResolverTimeout = 4 * time.Minute

	sysZone     = "service.internal"
	sysUser     = "user-service." + sysZone
	sysWide     = "wide." + sysZone
	sysWideSize = 60
)

// sysResolverScript runs as root inside `unshare --net --mount --pid --fork`.
// It prints result lines with a prefix the Go side parses: ID, GETENT, GO,
// NODE, and FAIL when a step fails. Every wait is a bounded polling loop.
const sysResolverScript = `
set -euo pipefail
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
dump_logs() {
	echo "--- regdns log"; cat "$WORK/regdns.log" 2>/dev/null || true
	echo "--- redis log"; cat "$WORK/redis.log" 2>/dev/null || true
}
trap 'rc=$?; if [ "$rc" -ne 0 ]; then dump_logs; fi; cleanup' EXIT

# until_ok SECONDS WHAT CMD...: runs CMD every 50 ms until it succeeds, for
# at most SECONDS.
until_ok() {
	local secs=$1 what=$2
	shift 2
	local end=$(( $(date +%s%N) + secs * 1000000000 ))
	until "$@"; do
		if (( $(date +%s%N) > end )); then
			echo "FAIL $what: not within ${secs}s"
			return 1
		fi
		sleep 0.05
	done
}

ip link set lo up

# Only files and dns for hosts: mdns, resolve (systemd-resolved), myhostname
# and the like would answer for, or shadow, the zone.
hosts_line=$(grep -E '^[[:space:]]*hosts:' /etc/nsswitch.conf 2>/dev/null | head -n1 | sed -E 's/^[[:space:]]*hosts:[[:space:]]*//; s/[[:space:]]+/ /g; s/ $//' || true)
if [ "$hosts_line" = "files dns" ]; then
	echo "NSSWITCH host /etc/nsswitch.conf: hosts: files dns"
else
	{ grep -vE '^[[:space:]]*hosts:' /etc/nsswitch.conf 2>/dev/null || true; echo "hosts: files dns"; } >"$WORK/nsswitch.conf"
	mount --bind "$WORK/nsswitch.conf" /etc/nsswitch.conf
	echo "NSSWITCH private nsswitch.conf bind-mounted (host says hosts: ${hosts_line:-nothing})"
fi
# A host nscd would answer getaddrinfo from outside the namespace.
for d in /run/nscd /var/run/nscd; do
	if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
done

printf 'nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:2\n' >"$WORK/resolv.conf"
mount --bind "$WORK/resolv.conf" /etc/resolv.conf
echo "RESOLVCONF $(tr '\n' ';' </etc/resolv.conf)"

mkdir -p "$WORK/redis"
"$REDIS_SERVER" --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
	--protected-mode no --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
pids+=($!)
redis_ping() {
	( exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && IFS= read -r -t 1 line <&3 && [[ $line == +PONG* ]] ) 2>/dev/null
}
until_ok 10 "redis-server answers PING" redis_ping
URL=redis://127.0.0.1:6379/0

# The registry, written by the real Python writers (refwriter.py). 300 s
# TTLs outlive the test however slow the machine.
reg() {
	local id
	id=$("$PYTHON" "$REFWRITER" "$URL" register "$1" "$2" "$3" '{}' 300)
	echo "ID $1 $id $2 $3"
	REPLY=$id
}
reg user-service 10.20.0.1 8080; u1=$REPLY
reg user-service 10.20.0.2 8081; u2=$REPLY
reg user-service 10.20.0.3 8082; u3=$REPLY
"$PYTHON" "$REFWRITER" "$URL" health user-service "$u1" healthy 100
"$PYTHON" "$REFWRITER" "$URL" health user-service "$u3" unhealthy 100
# 60 instances, too many SRV records for one UDP answer: TC, then TCP. One
# interpreter runs the writer's own ServiceRegistry.register 60 times.
"$PYTHON" - "$(dirname "$REFWRITER")" "$URL" "$WIDE_SIZE" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import redis
import refwriter
r = redis.Redis.from_url(sys.argv[2])
registry = refwriter.ServiceRegistry(r, 300)
for i in range(int(sys.argv[3])):
    host, port = f"10.21.{i // 250}.{i % 250 + 1}", 9000 + i
    print("ID wide", registry.register("wide", host, port, {}), host, port)
r.close()
EOF

"$REGDNS" serve -listen 127.0.0.1:53 -zone service.internal -health-mode healthy_or_unknown \
	-redis "$URL" >"$WORK/regdns.log" 2>&1 &
pids+=($!)

# getaddrinfo, as every libc program calls it.
addrs() { getent ahosts "$1" | awk '{print $1}' | sort -u | tr '\n' ' '; }
has_addrs() { [ "$(addrs "$1")" = "$2" ]; }
until_ok 20 "getent ahosts user-service.service.internal lists 10.20.0.1 and 10.20.0.2" \
	has_addrs user-service.service.internal "10.20.0.1 10.20.0.2 "

# A registration made while everything runs reaches the system resolver.
reg user-service 10.20.0.4 8083; u4=$REPLY
until_ok 20 "getent ahosts user-service.service.internal lists the late 10.20.0.4" \
	has_addrs user-service.service.internal "10.20.0.1 10.20.0.2 10.20.0.4 "
until_ok 20 "getent ahosts wide.service.internal succeeds" getent ahosts wide.service.internal

getent ahosts user-service.service.internal | sed 's/^/GETENT user-service.service.internal /'
for id in "$u1" "$u2" "$u3" "$u4"; do
	rc=0
	out=$(getent ahosts "$id.user-service.service.internal") || rc=$?
	echo "GETENT-RC $id.user-service.service.internal $rc"
	printf '%s\n' "$out" | sed "s/^/GETENT $id.user-service.service.internal /"
done
getent ahosts wide.service.internal | sed 's/^/GETENT wide.service.internal /'
rc=0
getent ahosts nope.service.internal >/dev/null || rc=$?
echo "GETENT-RC nope.service.internal $rc"

# Go's own resolver: the test binary, re-executed.
REGDNS_SYSRESOLVER_HELPER=1 \
	REGDNS_SYSRESOLVER_NAMES="user-service.service.internal wide.service.internal nope.service.internal" \
	"$TESTBIN" -test.run='^TestSysResolverGoHelper$' -test.count=1 -test.timeout=2m

# Node: c-ares for resolveSrv/resolve4, getaddrinfo for lookup.
if [ -n "$NODE" ]; then
	"$NODE" -e "$NODE_JS" user-service.service.internal wide.service.internal
else
	echo "NODE SKIP node is not on PATH"
fi
echo "DONE"
`

// sysResolverNodeJS prints one NODE line per answer, and NODE ERR lines.
const sysResolverNodeJS = `
const dns = require('dns');
(async () => {
  for (const name of process.argv.slice(1)) {
    try {
      for (const r of await dns.promises.resolveSrv(name)) console.log('NODE SRV', name, r.name, r.port);
    } catch (e) { console.log('NODE ERR SRV', name, e.code); }
    try {
      for (const a of await dns.promises.resolve4(name)) console.log('NODE A', name, a);
    } catch (e) { console.log('NODE ERR A', name, e.code); }
    try {
      for (const a of await dns.promises.lookup(name, { all: true, family: 4 })) console.log('NODE LOOKUP', name, a.address);
    } catch (e) { console.log('NODE ERR LOOKUP', name, e.code); }
  }
  try {
    await dns.promises.resolveSrv('nope.service.internal');
    console.log('NODE NX none');
  } catch (e) { console.log('NODE NX', e.code); }
})();
`

// TestSysResolverGoHelper is not a test of its own: TestSysResolverUnshare
// re-executes the test binary with sysResolverHelperEnv set to run it inside
// the namespace, where it resolves through /etc/resolv.conf with Go's
// resolver and prints GO lines. It records which transports the resolver
// dialed, so TC then TCP shows.
func TestSysResolverGoHelper(t *testing.T) {
	if os.Getenv(sysResolverHelperEnv) != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resolver := func(tag string) *net.Resolver {
		var mu sync.Mutex // A and AAAA are looked up in parallel
		seen := map[string]bool{}
		return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			mu.Lock()
			if key := network + " " + address; !seen[key] {
				seen[key] = true
				fmt.Printf("GO DIAL %s %s %s\n", tag, network, address)
			}
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		}}
	}
	for _, name := range strings.Fields(os.Getenv(sysResolverNamesEnv)) {
		_, srvs, err := resolver(name+" SRV").LookupSRV(ctx, "", "", name)
		if err != nil {
			var dnsErr *net.DNSError
			fmt.Printf("GO ERR SRV %s notfound=%t %v\n", name, errors.As(err, &dnsErr) && dnsErr.IsNotFound, err)
		}
		for _, s := range srvs {
			fmt.Printf("GO SRV %s %s %d\n", name, s.Target, s.Port)
		}
		addrs, err := resolver(name+" HOST").LookupHost(ctx, name)
		if err != nil {
			var dnsErr *net.DNSError
			fmt.Printf("GO ERR HOST %s notfound=%t %v\n", name, errors.As(err, &dnsErr) && dnsErr.IsNotFound, err)
		}
		for _, a := range addrs {
			fmt.Printf("GO HOST %s %s\n", name, a)
		}
	}
}

// sysInstance is one instance the script registered.
type sysInstance struct {
	id, host string
	port     int
}

// sysOutput is the namespace script's output, split by line prefix.
type sysOutput struct {
	all       string
	instances map[string][]sysInstance // service -> instances, in order
	lines     map[string][][]string    // prefix -> fields after it
}

func parseSysOutput(t *testing.T, out string) sysOutput {
	t.Helper()
	o := sysOutput{all: out, instances: map[string][]sysInstance{}, lines: map[string][][]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "ID" && len(f) == 5 {
			port, err := strconv.Atoi(f[4])
			require.NoError(t, err, "line %q", sc.Text())
			o.instances[f[1]] = append(o.instances[f[1]], sysInstance{id: f[2], host: f[3], port: port})
			continue
		}
		o.lines[f[0]] = append(o.lines[f[0]], f[1:])
	}
	require.NoError(t, sc.Err())
	return o
}

// fields returns the fields after prefix of every line whose next fields are
// match, with those left out.
func (o sysOutput) fields(prefix string, match ...string) [][]string {
	var out [][]string
	for _, f := range o.lines[prefix] {
		if len(f) >= len(match) && slices.Equal(f[:len(match)], match) {
			out = append(out, f[len(match):])
		}
	}
	return out
}

// column returns field i of every line of fields(prefix, match...), sorted
// and deduplicated.
func (o sysOutput) column(i int, prefix string, match ...string) []string {
	var out []string
	for _, f := range o.fields(prefix, match...) {
		if i < len(f) {
			out = append(out, f[i])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// srvSet renders SRV answers as sorted "target:port" strings, without the
// trailing dot Go keeps and Node drops.
func srvSet(rows [][]string) []string {
	var out []string
	for _, f := range rows {
		if len(f) >= 2 {
			out = append(out, strings.TrimSuffix(f[0], ".")+":"+f[1])
		}
	}
	slices.Sort(out)
	return out
}

func wantSRV(instances []sysInstance, service string, skip ...string) []string {
	var out []string
	for _, in := range instances {
		if !slices.Contains(skip, in.id) {
			out = append(out, fmt.Sprintf("%s.%s:%d", in.id, service, in.port))
		}
	}
	slices.Sort(out)
	return out
}

func hostsOf(instances []sysInstance) []string {
	var out []string
	for _, in := range instances {
		out = append(out, in.host)
	}
	slices.Sort(out)
	return out
}

// requireNamespaces skips the test unless it can create network, mount and
// PID namespaces: root, and not in a container that forbids unshare.
func requireNamespaces(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("sysresolver: needs Linux namespaces (unshare --net --mount)")
	}
	if os.Geteuid() != 0 {
		t.Skip("sysresolver: needs root to run regdns on port 53 in a private network and mount namespace " +
			"(unshare --net --mount) with a bind-mounted /etc/resolv.conf; run the tests as root to resolve " +
			"through glibc getaddrinfo, Go's resolver and Node's dns.resolveSrv")
	}
	bin := lookPath(t, "unshare", "/usr/bin/unshare")
	out, err := exec.Command(bin, "--net", "--mount", "--pid", "--fork", "--kill-child", "--", "true").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "Operation not permitted") || strings.Contains(string(out), "Permission denied") {
			t.Skipf("sysresolver: root, but unshare --net --mount --pid is not permitted here "+
				"(a container without CAP_SYS_ADMIN?): %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("unshare --net --mount --pid --fork true: %v\n%s", err, out)
	}
	return bin
}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("go tool not found on PATH nor at %s", p)
	}
	return p
}

func TestSysResolverUnshare(t *testing.T) {
	unshare := requireNamespaces(t)
	redisServer := lookPath(t, "redis-server")
	lookPath(t, "getent")
	lookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	python := lookPath(t, "/usr/bin/python3")
	refwriter, err := filepath.Abs(filepath.Join("internal", "redistest", "refwriter.py"))
	require.NoError(t, err)
	require.FileExists(t, refwriter)
	testBin, err := os.Executable()
	require.NoError(t, err)
	node, err := exec.LookPath("node")
	if err != nil {
		node = ""
	}

	// The regdns binary as deployed: `go build`, then `regdns serve`.
	work := t.TempDir()
	regdnsBin := filepath.Join(work, "regdns")
	build := exec.Command(goTool(t), "build", "-o", regdnsBin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build regdns:\n%s", out)

	ctx, cancel := context.WithTimeout(context.Background(), sysResolverTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--", "/bin/bash", "-c", sysResolverScript)
	cmd.Env = append(os.Environ(),
		"WORK="+work,
		"REDIS_SERVER="+redisServer,
		"PYTHON="+python,
		"REFWRITER="+refwriter,
		"REGDNS="+regdnsBin,
		"TESTBIN="+testBin,
		"NODE="+node,
		"NODE_JS="+sysResolverNodeJS,
		"WIDE_SIZE="+strconv.Itoa(sysWideSize),
	)
	// Everything the script starts stays in unshare's process group (and in
	// its PID namespace, which dies with the script): a timeout kills it all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	o := parseSysOutput(t, buf.String())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("namespace script output:\n%s", buf.String())
		}
	})
	require.NoError(t, err, "namespace script failed: %v", o.lines["FAIL"])
	require.Empty(t, o.lines["FAIL"])
	require.NotEmpty(t, o.lines["DONE"], "script did not finish")
	for _, l := range append(o.lines["NSSWITCH"], o.lines["RESOLVCONF"]...) {
		t.Log(strings.Join(l, " "))
	}

	users := o.instances["user-service"]
	require.Len(t, users, 4, "user-service instances registered")
	unhealthy := users[2] // 10.20.0.3, marked unhealthy by the HealthChecker
	serving := slices.Delete(slices.Clone(users), 2, 3)
	wide := o.instances["wide"]
	require.Len(t, wide, sysWideSize, "wide instances registered")
	wantUserSRV := wantSRV(users, sysUser, unhealthy.id)
	wantWideSRV := wantSRV(wide, sysWide)
	wantUserHosts := hostsOf(serving)
	wideHosts := hostsOf(wide)

	t.Run("glibc getaddrinfo", func(t *testing.T) {
		require.Equal(t, wantUserHosts, o.column(0, "GETENT", sysUser), "getent ahosts %s", sysUser)
		for _, in := range serving {
			name := in.id + "." + sysUser
			require.Equal(t, [][]string{{"0"}}, o.fields("GETENT-RC", name), "getent ahosts %s", name)
			require.Equal(t, []string{in.host}, o.column(0, "GETENT", name), "getent ahosts %s", name)
		}
		// Only the service name is filtered by health; what the unhealthy
		// instance's own name gives is regdns's business, logged here.
		t.Logf("getent ahosts %s.%s (unhealthy): exit %v, %v", unhealthy.id, sysUser,
			o.fields("GETENT-RC", unhealthy.id+"."+sysUser), o.column(0, "GETENT", unhealthy.id+"."+sysUser))
		got := o.column(0, "GETENT", sysWide)
		require.NotEmpty(t, got)
		require.LessOrEqual(t, len(got), 8, "A answers keep at most dns.max_answers records")
		require.Subset(t, wideHosts, got)
		require.Equal(t, [][]string{{"2"}}, o.fields("GETENT-RC", "nope."+sysZone), "getent exit status 2: not found")
		t.Logf("getent ahosts %s: %v; %s: %d addresses", sysUser, wantUserHosts, sysWide, len(got))
	})

	t.Run("Go net.Resolver", func(t *testing.T) {
		require.Empty(t, o.fields("GO", "ERR", "SRV", sysUser))
		require.Equal(t, wantUserSRV, srvSet(o.fields("GO", "SRV", sysUser)), "LookupSRV %s", sysUser)
		require.Equal(t, wantUserHosts, o.column(0, "GO", "HOST", sysUser), "LookupHost %s", sysUser)
		require.Equal(t, [][]string{{"udp", "127.0.0.1:53"}}, o.fields("GO", "DIAL", sysUser, "SRV"),
			"the small SRV answer fits UDP, from the nameserver in /etc/resolv.conf")

		require.Empty(t, o.fields("GO", "ERR", "SRV", sysWide))
		require.Equal(t, wantWideSRV, srvSet(o.fields("GO", "SRV", sysWide)), "LookupSRV %s: all %d", sysWide, sysWideSize)
		require.Equal(t, [][]string{{"udp", "127.0.0.1:53"}, {"tcp", "127.0.0.1:53"}}, o.fields("GO", "DIAL", sysWide, "SRV"),
			"%d SRV records: TC over UDP, then the whole answer over TCP", sysWideSize)
		hosts := o.column(0, "GO", "HOST", sysWide)
		require.NotEmpty(t, hosts)
		require.LessOrEqual(t, len(hosts), 8)
		require.Subset(t, wideHosts, hosts)

		nope := "nope." + sysZone
		require.Len(t, o.fields("GO", "ERR", "HOST", nope, "notfound=true"), 1, "LookupHost %s: not found", nope)
		require.Len(t, o.fields("GO", "ERR", "SRV", nope, "notfound=true"), 1, "LookupSRV %s: not found", nope)
		t.Logf("LookupSRV %s: %d targets over UDP; %s: %d targets over UDP then TCP", sysUser, len(wantUserSRV), sysWide, sysWideSize)
	})

	t.Run("Node dns.resolveSrv", func(t *testing.T) {
		if skip := o.lines["NODE"]; len(skip) > 0 && skip[0][0] == "SKIP" {
			t.Skipf("node: %s", strings.Join(skip[0][1:], " "))
		}
		require.Empty(t, o.fields("NODE", "ERR"))
		require.Equal(t, wantUserSRV, srvSet(o.fields("NODE", "SRV", sysUser)), "resolveSrv %s", sysUser)
		require.Equal(t, wantWideSRV, srvSet(o.fields("NODE", "SRV", sysWide)), "resolveSrv %s (TC, then TCP)", sysWide)
		require.Equal(t, wantUserHosts, o.column(0, "NODE", "A", sysUser), "resolve4 %s", sysUser)
		require.Equal(t, wantUserHosts, o.column(0, "NODE", "LOOKUP", sysUser), "lookup %s", sysUser)
		require.Subset(t, wideHosts, o.column(0, "NODE", "A", sysWide))
		require.Equal(t, [][]string{{"ENOTFOUND"}}, o.fields("NODE", "NX"), "resolveSrv nope.%s", sysZone)
		t.Logf("resolveSrv %s: %d targets; %s: %d targets", sysUser, len(wantUserSRV), sysWide, sysWideSize)
	})
}
