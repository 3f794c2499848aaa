package main

import (
	"io"

	"github.com/spf13/cobra"
)

func importKeepalivedCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "import-keepalived FILE",
		Short: "convert a keepalived.conf vrrp_instance into a keepraft config",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return nil
		},
	}
}
