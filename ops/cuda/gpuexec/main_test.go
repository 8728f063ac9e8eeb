package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary play a cu test binary: GPUEXEC_CHILD picks what it does.
func TestMain(m *testing.M) {
	switch os.Getenv("GPUEXEC_CHILD") {
	case "nodevice":
		fmt.Println(`Error in initialization, please refer to "https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__INITIALIZE.html" for details on: NoDevice`)
		os.Exit(1)
	case "fail":
		fmt.Println("=== RUN   TestX\n--- FAIL: TestX")
		os.Exit(1)
	case "pass":
		fmt.Println("PASS")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	for _, c := range []struct {
		child, want string
		code        int
	}{
		{"nodevice", "--- SKIP: every test: no GPU answered: cuInit: NoDevice", 0},
		{"fail", "--- FAIL: TestX", 1},
		{"pass", "PASS", 0},
	} {
		t.Setenv("GPUEXEC_CHILD", c.child)
		var out, errOut bytes.Buffer
		code := run([]string{os.Args[0]}, &out, &errOut)
		if code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", c.child, code, out.String(), c.code, c.want)
		}
	}
	if code := run(nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
}
