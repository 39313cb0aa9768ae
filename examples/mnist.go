package examples

import _ "embed"

//go:generate go run ../cmd/convbn-diag pretrain --output mnist.pt

//go:embed mnist.pt
var mnistCheckpoint []byte

func init() {
	catalog["mnist"] = example{
		fileName: "mnist.pt",
		summary:  "small CNN of three ConvBN blocks pretrained by `convbn-diag pretrain` on MNIST digits 0–4 (median |ω| 0.31, test accuracy 0.979), the starting point of simulate and sweep",
		data:     mnistCheckpoint,
	}
}
