package registry_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// roundTrips counts what go-redis sends: one per command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" { // a new pooled connection's handshake, not the refresh
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

var _ redis.Hook = (*roundTrips)(nil)

// A refresh of one service costs at most two round trips however many
// instances it has (core issue: 1,000 instances, <= 2 round trips).
func TestRefreshOfThousandInstancesIsTwoRoundTrips(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	for i := range 1000 {
		ip := net.IPv4(10, 9, byte(i/250), byte(i%250+1)).String()
		require.NoError(t, w.Register(ctx, "wide", fmt.Sprintf("i%04d", i), ip, 8000, map[string]any{"weight": i % 5}, time.Minute))
		require.NoError(t, w.SetHealth(ctx, "wide", fmt.Sprintf("i%04d", i), registry.StatusHealthy, 10*time.Second))
	}
	client := rs.Client(t)
	hook := &roundTrips{}
	client.AddHook(hook)
	store := registry.NewStore(client, registry.DefaultKeys())
	entries, err := store.Service(ctx, "wide")
	require.NoError(t, err)
	require.Len(t, entries, 1000)
	for _, e := range entries {
		require.NotNil(t, e.Data, e.ID)
		require.NotNil(t, e.HealthData, e.ID)
		require.Positive(t, e.TTL)
	}
	require.LessOrEqual(t, hook.n.Load(), int64(2), "round trips for one service refresh")
}
