// Package examples embeds small checkpoints for trying convbn-diag without
// a model of one's own and for testing it end to end.
//
// Names lists the examples, Open opens one as a *checkpoint.File, and Bytes
// returns its file content.
//
// # flags
//
// flags.pt is a PyTorch zip checkpoint (torch.load(path, weights_only=True)
// reads it) of a small CNN for 3×32×32 inputs and 10 classes. Its weights
// are seeded random draws of realistic size: Kaiming-normal convs,
// PyTorch's default uniform Linear and conv biases, BatchNorm γ, β and
// running statistics drawn per layer, and num_batches_tracked = 46900. The
// top-level object is {"state_dict": OrderedDict, "convbn_diag_metadata":
// {str: str}}, and the metadata holds every layer in forward order with its
// ε, momentum and conv geometry (checkpoint.MetadataLayersKey). Each layer
// is there to show one thing. The medians of |ω| = |γ/√(σ²+ε)| below are
// over channels with a finite, nonzero ω, computed in float64 from the
// stored float32 values:
//
//	features.0   Conv2d 3→16, 3×3, padding 1, no bias
//	features.1   BatchNorm2d(16), ε 1e-5: a pair with median |ω| 1.11;
//	             channel 3 is dead (γ = 0, ω = 0) and channel 7 has a
//	             negative γ (−0.8, ω ≈ −0.74)
//	features.2   ReLU
//	features.3   Conv2d 16→16, 3×3, depthwise (groups 16), dilation 2,
//	             padding 2, no bias
//	features.4   BatchNorm2d(16), ε 1e-5: running variances near 0.01 give
//	             median |ω| 8.55, so Deploy-mode training stalls; channel 9
//	             has σ² = 1e-12, so ω ≈ γ/√ε ≈ 322
//	features.5   ReLU
//	features.6   Conv2d 16→32, 3×3, stride 2, padding 1, with bias
//	features.7   BatchNorm2d(32), ε 1e-3 and momentum 0.03 (the
//	             Keras/YOLO convention): running variances near 50 give
//	             median |ω| 0.0507, so Deploy-mode training overshoots;
//	             channel 20 has σ² = −0.5, so σ²+ε ≤ 0 and ω is undefined
//	features.8   ReLU
//	features.9   Conv2d 32→32, 1×1, no bias: not a pair, because
//	features.10  ReLU sits between it and
//	features.11  BatchNorm2d(32), which has no conv to fold into
//	features.12  ConvTranspose2d 32→16, 4×4, stride 2, padding 1, groups 2,
//	             weight [32, 8, 4, 4]: output channel c is dimension 1
//	features.13  BatchNorm2d(16), ε 1e-5: γ ramps from 0.2 to 1.7 across
//	             the channels (median |ω| 1.05), so scaling along the wrong
//	             weight dimension gives visibly wrong fused weights
//	features.14  ReLU
//	pool         AdaptiveAvgPool2d to 1×1
//	flatten      Flatten
//	classifier   Linear 16→10, with bias
//
// So the file has four Conv→BN pairs (features.0→1, 3→4, 6→7, 12→13), one
// unpaired conv (features.9) and one unpaired BatchNorm (features.11).
//
// The generator in internal/flagsnet is deterministic. After changing it,
// regenerate the file from the repository root with
//
//	go generate ./examples
//
// and commit flags.pt; TestFlagsUpToDate fails while the two differ.
package examples

//go:generate go run ./internal/genflags -o flags.pt
