package cli

import (
	"os"

	"golang.org/x/term"
)

// isTTY reports whether progress goes to a terminal. Only a real *os.File
// that is a terminal counts, so captured output in tests is plain.
func isTTY() bool {
	f, ok := Stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func stdoutFd() uintptr {
	if f, ok := Stderr.(*os.File); ok {
		return f.Fd()
	}
	return os.Stdout.Fd()
}
