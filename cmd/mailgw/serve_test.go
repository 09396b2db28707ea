package main

import (
	"strings"
	"testing"
)

func TestReadAdminToken(t *testing.T) {
	const env = "MAILGW_TEST_ADMIN_TOKEN"
	tests := []struct {
		name, value, want, problem string
	}{
		{"token", "0123456789abcdef", "0123456789abcdef", ""},
		{"spaces around the token", "  0123456789abcdef\n", "0123456789abcdef", ""},
		{"short", "0123456789abcde", "", "at least 16"},
		{"empty", "", "", "at least 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.value)
			got, err := readAdminToken(env)
			if got != tt.want || (tt.problem == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("readAdminToken = %q, %v; want %q, problem %q", got, err, tt.want, tt.problem)
			}
			if err != nil && tt.value != "" && strings.Contains(err.Error(), tt.value) {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
	if got, err := readAdminToken(""); got != "" || err != nil {
		t.Errorf("no admin_token_env: %q, %v; want the pages off", got, err)
	}
}
