package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keepraft/keepraft/cmdline"
)

// shellWords are shell builtins and keywords that may start a /bin/sh -c command and have
// no program file to check.
var shellWords = []string{
	"!", ".", ":", "[", "case", "cd", "command", "eval", "exec", "exit", "export", "false",
	"for", "if", "read", "return", "set", "test", "true", "until", "while", "{", "(",
}

// shellProgram returns the program a /bin/sh -c command runs first, or "" when that
// cannot be told without a shell (a builtin, a keyword, a variable, a subshell).
func shellProgram(script string) string {
	words, _, err := cmdline.SplitMeta(script)
	if err != nil {
		return ""
	}
	for _, w := range words {
		if i := strings.IndexByte(w, '='); i > 0 && !strings.ContainsAny(w[:i], "/$") {
			continue // an environment assignment before the command
		}
		if slices.Contains(shellWords, w) || strings.ContainsAny(w, "$`(){}*?") {
			return ""
		}
		return w
	}
	return ""
}

// checkProgram reports why prog cannot be run: a path must be absolute and name an
// executable file; a bare name must be found in PATH.
func checkProgram(prog string) error {
	if !strings.Contains(prog, "/") {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("%s is not found in PATH (%s)", prog, os.Getenv("PATH"))
		}
		return nil
	}
	if !filepath.IsAbs(prog) {
		return fmt.Errorf("%s is a relative path: give an absolute path or a command name found in PATH", prog)
	}
	fi, err := os.Stat(prog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", prog)
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory", prog)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable (mode %04o)", prog, fi.Mode().Perm())
	}
	return nil
}
