package imap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgw/config"
)

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("MAILGW_TEST_IMAP_PW", " s3cret with spaces ")
	t.Setenv("MAILGW_TEST_IMAP_EMPTY", "")
	t.Setenv("MAILGW_TEST_IMAP_UNSET", "") // restored when the test ends
	os.Unsetenv("MAILGW_TEST_IMAP_UNSET")

	for _, tc := range []struct {
		name string
		m    config.IMAP
		want string
	}{
		{"env", config.IMAP{PasswordEnv: "MAILGW_TEST_IMAP_PW"}, " s3cret with spaces "},
		{"env set but empty", config.IMAP{PasswordEnv: "MAILGW_TEST_IMAP_EMPTY"}, ""},
		{"file with newline", config.IMAP{PasswordFile: write("lf", "s3cret\n")}, "s3cret"},
		{"file with CRLF", config.IMAP{PasswordFile: write("crlf", "s3cret\r\n")}, "s3cret"},
		{"file without newline", config.IMAP{PasswordFile: write("bare", "s3cret")}, "s3cret"},
		{"file keeps inner and leading space", config.IMAP{PasswordFile: write("space", " a b \n")}, " a b "},
		{"file wins over env", config.IMAP{PasswordFile: write("both", "from-file\n"), PasswordEnv: "MAILGW_TEST_IMAP_PW"}, "from-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.Name = "support"
			got, err := Password(tc.m)
			if err != nil || got != tc.want {
				t.Errorf("Password = %q, %v; want %q", got, err, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		m       config.IMAP
		mention []string
	}{
		{"missing env var", config.IMAP{Name: "support", PasswordEnv: "MAILGW_TEST_IMAP_UNSET"}, []string{"support", "MAILGW_TEST_IMAP_UNSET"}},
		{"missing file", config.IMAP{Name: "support", PasswordFile: filepath.Join(dir, "nope")}, []string{"support", "password_file", "nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Password(tc.m)
			if err == nil {
				t.Fatalf("Password = %q, want an error", got)
			}
			for _, s := range tc.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
