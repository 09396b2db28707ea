// Package proctest holds helpers that start and stop the processes tests
// depend on: the mailgw binary of the end-to-end tests, redis-server and
// Dovecot. It builds mailgw once per test binary, picks free ports, runs a
// child with the kernel told to kill it if the test binary dies, in a
// process group of its own when asked, waits for it to become ready within
// a bound, and ends it (or its whole group) when the test is done. Server
// adds to that what redistest and dovecottest share: a server child that
// a test stops, kills and starts again on the same port.
package proctest
