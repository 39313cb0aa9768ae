package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses of convbn-diag.
const (
	exitOK       = 0 // every file analyzed, no --fail-on threshold reached
	exitFailure  = 1 // a file could not be read or analyzed, or output failed
	exitUsage    = 2 // invalid flags or arguments
	exitRiskSeen = 3 // --fail-on found a layer at or above its risk level
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// streams are the standard streams a command reads and writes, injected so
// that tests can capture them.
type streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// ErrIsTerminal reports whether ErrOut is a terminal (for progress).
	ErrIsTerminal bool
}

func newSystemStreams() *streams {
	errTerm := false
	if fi, err := os.Stderr.Stat(); err == nil {
		errTerm = fi.Mode()&os.ModeCharDevice != 0
	}
	return &streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, ErrIsTerminal: errTerm}
}

// exitError carries the exit status a failed command should end with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf returns an error that ends the program with exitUsage.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// silentExit ends the program with code and prints nothing more, because
// the command already reported what happened.
func silentExit(code int) error {
	return &exitError{code: code, err: nil}
}

func newRootCmd(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "convbn-diag",
		Short: "Stability diagnostics for Convolution–BatchNorm blocks",
		Long: `convbn-diag finds every Convolution–BatchNorm pair in a checkpoint and
reports, per layer and per channel, the BatchNorm scale ω = γ/√(σ²+ε), the
fused weights W' = ω·W, and how training the fused weights (Deploy mode)
would scale each channel's learning rate: by 1/ω² for SGD and about 1/|ω|
for Adam. Nothing stored in a checkpoint is ever executed.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())}
	})

	root.AddCommand(newCmdAnalyze(s, nil))
	root.AddCommand(newCmdReport(s, nil))
	root.AddCommand(newCmdExplain(s, nil))
	root.AddCommand(newCmdPretrain(s, nil))
	root.AddCommand(newCmdSimulate(s, nil))
	root.AddCommand(newCmdSweep(s, nil))
	root.AddCommand(newCmdFuse(s, nil))
	return root
}

// execute runs the command line args and returns the exit status.
func execute(args []string, s *streams) int {
	root := newRootCmd(s)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}

	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(s.ErrOut, "convbn-diag: %v\n", ee.err)
		}
		return ee.code
	}
	// Every run function returns an *exitError, so anything else comes from
	// cobra's own checks (unknown command, wrong argument count): a usage
	// error.
	fmt.Fprintf(s.ErrOut, "convbn-diag: %v\nRun 'convbn-diag --help' for usage.\n", err)
	return exitUsage
}
