// Package checkpoint reads model checkpoints without executing anything
// stored in them.
//
// Open recognises the format from the file's content. It reads PyTorch zip
// archives (torch.save since 1.6), legacy PyTorch pickles (torch.save
// before 1.6, including the oldest _rebuild_tensor encoding), TorchScript
// archives (torch.jit.save), safetensors files and ONNX models. An ONNX
// model's graph is kept in Model.Graph; a TorchScript archive's scripted
// modules form Model.Root.
//
// A restricted unpickler maps every global a pickle references to an inert
// record, so nothing is imported or called. Every length a file declares is
// checked against the bytes that remain before anything is allocated. A
// hostile or truncated file therefore yields a *FormatError that names the
// file and the offset or tensor, not a crash or an allocation far beyond
// the file size.
//
// Open returns one Model per set of weights: a state dict or a pickled
// nn.Module, found inside nested dicts and lists. Optimizer state
// is skipped, and convbn-diag's own metadata entry goes to File.Metadata.
//
// Tensors are read lazily: Open records each tensor's dtype, shape, strides
// and where its storage lives, and Tensor.Float64s reads the elements only
// when asked.
package checkpoint
