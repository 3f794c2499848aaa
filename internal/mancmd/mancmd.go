// Package mancmd is the hidden gen-man command that writes a cobra command tree's man
// pages; keepraftd and raftctl both carry it.
package mancmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command writes the man pages of the command tree it belongs to (section 1, one page per
// visible command), naming source ("keepraft <version>") in their footer.
// SOURCE_DATE_EPOCH, when set, fixes the pages' date.
func Command(stdout io.Writer, source string) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:    "gen-man --out DIR",
		Short:  "write the man pages of this command and its subcommands into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("gen-man --out %s: %w", out, err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Section: "1", Source: source, Manual: "keepraft manual"}
			if err := doc.GenManTree(root, header, out); err != nil {
				return fmt.Errorf("gen-man --out %s: %w", out, err)
			}
			pages, err := filepath.Glob(filepath.Join(out, root.Name()+"*.1"))
			if err != nil {
				return fmt.Errorf("gen-man --out %s: %w", out, err)
			}
			for _, p := range pages {
				fmt.Fprintln(stdout, "wrote", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the man pages")
	return cmd
}
