// Package checkpoint reads model checkpoints without executing anything
// stored in them.
//
// Open recognises the format from the file's content: PyTorch zip archives
// (torch.save since 1.6), legacy PyTorch pickles (torch.save before 1.6,
// including the oldest _rebuild_tensor encoding), safetensors and ONNX. A
// restricted unpickler maps every global a pickle references to an inert
// record; nothing is imported or called. Every length a file declares is
// checked against the bytes that remain before anything is allocated, so a
// hostile or truncated file yields an error that names the file and the
// offset or tensor, never a crash or an allocation far beyond the file size.
//
// Tensors are read lazily: Open records each tensor's dtype, shape, strides
// and where its storage lives, and Tensor.Float64s reads the elements only
// when asked.
package checkpoint
