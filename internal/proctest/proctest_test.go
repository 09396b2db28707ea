package proctest

import (
	"os/exec"
	"testing"
)

func TestStartMailgwEnv(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("sh not found: %v", err)
	}
	t.Setenv("MAILGW_CONFIG", "/from/the/test")
	t.Setenv("MAILGW_REDIS_URL", "redis://from-the-test")
	g := StartMailgwEnv(t, sh, []string{"PROCTEST_EXTRA=added"}, "-c",
		`echo "config=$MAILGW_CONFIG redis=$MAILGW_REDIS_URL extra=$PROCTEST_EXTRA"; echo oops >&2`)
	<-g.Done()
	if err := g.Err(); err != nil {
		t.Fatalf("sh: %v", err)
	}
	if got, want := g.Stdout.String(), "config= redis= extra=added\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := g.Stderr.String(), "oops\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}
