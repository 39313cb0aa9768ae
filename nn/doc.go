// Package nn holds the tensors and kernels of convbn-diag's ConvBN engine:
// NCHW tensors over float32 or float64, 2-D convolution through im2col and
// a swappable matrix multiply (Gemm), a direct depthwise kernel, BatchNorm2d
// in train and eval mode, ReLU, max and global average pooling, a linear
// layer, softmax cross-entropy and the SGD and Adam/AdamW optimizers.
//
// float64 is used to verify gradients against finite differences and
// PyTorch; float32 is the fast path. Every kernel has a backward pass that
// accumulates parameter gradients into the caller's buffers, as PyTorch's
// autograd does, and returns the gradient of its input.
//
// Shapes are programmer input, so a shape mismatch panics; values read
// from users' files are checked by the callers that read them.
package nn
