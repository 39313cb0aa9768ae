// Command genflags writes the "flags" example checkpoint that the examples
// package embeds. Run it through go generate ./examples, which writes
// examples/flags.pt.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/convbn-diag/convbn-diag/examples/internal/flagsnet"
)

func main() {
	out := flag.String("o", "flags.pt", "output `path` of the checkpoint")
	flag.Parse()
	if err := flagsnet.Build().WriteFile(*out); err != nil {
		fmt.Fprintln(os.Stderr, "genflags:", err)
		os.Exit(1)
	}
}
