package route

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"mailgw/internal/redistest"
)

// TestWaitReplicas: with wait_replicas set and no replica to confirm, the
// write is reported as failed (the caller answers 451), in bounded time.
func TestWaitReplicas(t *testing.T) {
	t.Parallel()
	s := redistest.Real(t)
	st := NewStore(s.Client(t), Options{WaitReplicas: 1, Timeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	start := time.Now()
	if w, err := st.Write(ctx, sampleRequest("IT", "w@example.com", "alice@example.com")); err == nil {
		t.Errorf("Write without replicas = %+v, want an error", w)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Write took %v", d)
	}
}

// TestWaitReplicasConfirmsTheWrite: WAIT counts the writes of the
// connection it is sent on, so it confirms the request only when it runs on
// the connection that ran the write script. The replica sleeps (DEBUG
// SLEEP) while the request is written: it cannot acknowledge anything, so a
// Write that succeeds during that time was never confirmed.
func TestWaitReplicasConfirmsTheWrite(t *testing.T) {
	t.Parallel()
	primary := redistest.RealWith(t, redistest.Options{ExtraArgs: []string{"--repl-diskless-sync-delay", "0"}})
	replica := redistest.RealWith(t, redistest.Options{ExtraArgs: []string{"--enable-debug-command", "yes"}})
	ctx := testCtx(t)
	host, port, _ := strings.Cut(primary.Addr, ":")
	rc := replica.Client(t)
	if err := rc.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	// A pool that hands out its connections in turn (PoolFIFO), with two
	// of them idle, as a busy pool would.
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr, PoolFIFO: true, MinIdleConns: 2})
	t.Cleanup(func() { _ = pc.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") && pc.PoolStats().IdleConns >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := NewStore(pc, Options{WaitReplicas: 1, Timeout: time.Second})
	if w, err := st.Write(ctx, sampleRequest("IT", "awake@example.com", "alice@example.com")); err != nil || w.ID != "IT-1" {
		t.Fatalf("Write with the replica in sync = %+v, %v", w, err)
	}

	const sleep = 2 * time.Second
	slept := make(chan error, 1)
	go func() { slept <- rc.Do(context.Background(), "DEBUG", "SLEEP", sleep.Seconds()).Err() }()
	time.Sleep(300 * time.Millisecond) // the replica is asleep now
	start := time.Now()
	w, err := st.Write(ctx, sampleRequest("IT", "asleep@example.com", "alice@example.com"))
	if err == nil {
		t.Errorf("Write returned %+v after %v while the only replica was asleep: WAIT ran on another connection and confirmed nothing", w, time.Since(start))
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
}

// TestWaitReplicasCluster: in a Redis Cluster, WAIT must go to the primary
// that ran the write script. Two primaries, each with a replica; the
// replica of the primary serving {IT} sleeps while requests are written, so
// no write may be reported as confirmed during that time.
func TestWaitReplicasCluster(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	opts := redistest.Options{ExtraArgs: []string{
		"--cluster-enabled", "yes", "--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0",
	}}
	var nodes [4]*redistest.Server // primary 0, primary 1, replica of 0, replica of 1
	var clients [4]*redis.Client
	var ids [4]string
	for i := range nodes {
		nodes[i] = redistest.RealWith(t, opts)
		clients[i] = nodes[i].Client(t)
		id, err := clients[i].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	if err := clients[0].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 8191).Err(); err != nil {
		t.Fatal(err)
	}
	if err := clients[1].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 8192, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		host, port, _ := strings.Cut(nodes[i].Addr, ":")
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all nodes to meet", func() bool {
		for _, c := range clients {
			if n, _ := c.ClusterNodes(ctx).Result(); strings.Count(n, "\n") < 4 || strings.Contains(n, "handshake") {
				return false
			}
		}
		return true
	})
	for i := 2; i < 4; i++ {
		if err := clients[i].Do(ctx, "CLUSTER", "REPLICATE", ids[i-2]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the cluster and both replicas", func() bool {
		for i, c := range clients {
			if info, _ := c.ClusterInfo(ctx).Result(); !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			if i >= 2 {
				if info, _ := c.Info(ctx, "replication").Result(); !strings.Contains(info, "master_link_status:up") {
					return false
				}
			}
		}
		return true
	})

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[0].Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	st := NewStore(cc, Options{WaitReplicas: 1, Timeout: 250 * time.Millisecond})
	waitFor(t, "a first confirmed write", func() bool {
		_, err := st.Write(ctx, sampleRequest("IT", "first@example.com", "alice@example.com"))
		return err == nil
	})

	slot, err := clients[0].ClusterKeySlot(ctx, "{IT}").Result()
	if err != nil {
		t.Fatal(err)
	}
	sleeper := clients[2]
	if slot > 8191 {
		sleeper = clients[3]
	}
	const sleep = 4 * time.Second
	slept := make(chan error, 1)
	go func() { slept <- sleeper.Do(context.Background(), "DEBUG", "SLEEP", sleep.Seconds()).Err() }()
	time.Sleep(300 * time.Millisecond)
	asleepUntil := time.Now().Add(sleep - time.Second)
	for i := 0; i < 8 && time.Now().Before(asleepUntil); i++ {
		w, err := st.Write(ctx, sampleRequest("IT", fmt.Sprintf("asleep-%d@example.com", i), "alice@example.com"))
		if err == nil && time.Now().Before(asleepUntil) {
			t.Errorf("Write %d returned %+v while the replica of {IT}'s primary was asleep: WAIT went to another primary", i, w)
		}
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
