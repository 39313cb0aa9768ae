// Command convbn-diag diagnoses the Convolution–BatchNorm blocks of a
// checkpoint: per layer and per channel it reports the BatchNorm scale ω,
// the fused weights, and how training the fused weights (Deploy mode) would
// distort each channel's learning rate. Run "convbn-diag help" for usage.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:], newSystemStreams()))
}
