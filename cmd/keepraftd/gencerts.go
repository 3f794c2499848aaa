package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/mtls"
)

// defaultCertValidity is how long gen-certs certificates are valid by default.
const defaultCertValidity = 2 * 365 * 24 * time.Hour

func genCertsCmd(stdout io.Writer) *cobra.Command {
	var out string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "gen-certs --out DIR NAME...",
		Short: "make a small cluster CA and one certificate per name (node ids and raftctl)",
		Long: `gen-certs writes DIR/ca.pem and DIR/ca-key.pem (reused when present) and, for every
NAME, DIR/NAME.pem and DIR/NAME-key.pem: an ECDSA certificate whose SAN is NAME. Give every
node id of cluster.peers and "raftctl" for operators. Keep ca-key.pem offline once done.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, names []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			paths, err := mtls.Generate(out, names, nil, validity)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintln(stdout, "wrote", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the CA and the certificates")
	cmd.Flags().DurationVar(&validity, "validity", defaultCertValidity, "how long the certificates are valid")
	return cmd
}
