// Package redistest contains helpers that give tests a Redis.
//
// Mini starts an in-memory miniredis: fast, no outside binary, good for logic
// that keeps to the common command subset. Real starts a real redis-server
// process on 127.0.0.1 for behaviour miniredis lacks (newer stream options,
// persistence, outages); its Server can be stopped, restarted and killed to
// simulate failures.
//
// Every resource is tied to the test: servers, clients and data
// directories are released with t.Cleanup, so no TestMain set-up is needed.
//
// # Missing redis-server
//
// A missing redis-server binary fails the test: skipped tests hide defects.
// scripts/test.sh installs it. Set MAILGW_SKIP_REAL=1 to skip such tests
// instead (for a quick local run only); that setting is ignored, and the
// test fails, when CI or MAILGW_REQUIRE_REAL is set.
package redistest
