package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/kaconf"
)

func importKeepalivedCmd(stdout, stderr io.Writer) *cobra.Command {
	var instance string
	cmd := &cobra.Command{
		Use:   "import-keepalived FILE",
		Short: "convert a keepalived.conf vrrp_instance into a keepraft config (YAML on stdout, warnings on stderr)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("import-keepalived: %w", err)
			}
			defer f.Close()
			file, err := kaconf.Parse(f)
			if err != nil {
				return fmt.Errorf("import-keepalived %s: %w", args[0], err)
			}
			doc, warnings, err := kaconf.Convert(file, instance)
			if err != nil {
				return fmt.Errorf("import-keepalived %s: %w", args[0], err)
			}
			for _, w := range warnings {
				fmt.Fprintln(stderr, "warning:", w)
			}
			_, err = stdout.Write(doc)
			return err
		},
	}
	cmd.Flags().StringVar(&instance, "instance", "", "vrrp_instance to convert (default: the only one)")
	return cmd
}
