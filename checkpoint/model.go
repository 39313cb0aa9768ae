package checkpoint

import "io"

// DType is the element type of a tensor's storage.
type DType int

// Storage element types. The names follow PyTorch's storage classes.
const (
	Invalid DType = iota
	Float32
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
	Complex64
	Complex128
	QInt8
	QUInt8
	QInt32
)

// Format names the container format of a checkpoint file.
type Format string

// Container formats that Open recognises.
const (
	FormatTorchZip    Format = "pytorch-zip"
	FormatTorchLegacy Format = "pytorch-legacy"
	FormatTorchScript Format = "torchscript"
	FormatSafetensors Format = "safetensors"
	FormatONNX        Format = "onnx"
)

// Tensor is one named tensor of a checkpoint. Its elements are not read
// until Float64s is called.
type Tensor struct {
	// Name is the dotted path of the tensor inside its model, for example
	// "layer1.0.bn1.running_var", with any DataParallel "module." prefix
	// already removed (Model.StrippedPrefix records it).
	Name string

	DType DType

	// Shape and Strides are in elements; Offset is the storage offset of the
	// first element, also in elements.
	Shape   []int
	Strides []int
	Offset  int64

	// Storage is the storage the tensor views; several tensors may share one.
	Storage *Storage
}

// Module is one node of a pickled nn.Module tree (or a TorchScript module).
// State-dict checkpoints have no modules.
type Module struct {
	// Name is the dotted path from the model root ("" for the root).
	Name string
	// Class is the fully qualified class name the pickle references, for
	// example "torch.nn.modules.batchnorm.BatchNorm2d".
	Class string
	// Attrs holds the module's plain attributes (eps, momentum, affine,
	// track_running_stats, stride, padding, dilation, groups, transposed,
	// in_channels, out_channels, kernel_size, ...). Values are int64,
	// float64, bool, string, nil or []any of those.
	Attrs map[string]any
	// Params lists the module's own parameters and buffers in registration
	// order, as short names ("weight", "running_mean", ...) mapped to the
	// tensor's full name in Model.Tensors. A nil tensor (a bias=False conv)
	// is listed with an empty full name.
	Params []Param
	// Children are the submodules in registration order.
	Children []*Module
}

// Param is one parameter or buffer slot of a Module.
type Param struct {
	Short string // name inside the module: "weight", "bias", ...
	Full  string // dotted name in Model.Tensors, or "" when the slot is None
}

// Model is one set of weights found in a checkpoint. A file usually holds
// one; a training checkpoint may hold several (for example "model" and
// "ema"), each analyzed on its own.
type Model struct {
	// Key is the dotted path to the model inside the file's top-level
	// object, for example "state_dict", "model" or "ema". It is "" when the
	// top-level object is itself the state dict or module.
	Key string
	// Tensors lists the model's tensors in file order (state-dict order, or
	// registration order for a pickled module).
	Tensors []*Tensor
	// Root is the module tree for a pickled nn.Module or TorchScript model,
	// nil for a plain state dict.
	Root *Module
	// StrippedPrefix is the prefix removed from every tensor name, such as
	// "module." (DataParallel), or "" when none was.
	StrippedPrefix string
	// Graph is the computation graph of an ONNX model, whose initializers
	// are Tensors; nil for other formats.
	Graph *Graph
}

// File is an opened checkpoint. Close releases the underlying file.
type File struct {
	Path   string
	Format Format
	Models []*Model
	// Globals lists every global (module.name) the file's pickles
	// reference, sorted and without duplicates. Empty for formats without
	// pickles.
	Globals []string
	// Warnings are problems that did not stop the file from being read,
	// such as a global outside what a tensor checkpoint needs.
	Warnings []string
	// Unread names the tensors the file holds that are in no Model because
	// this reader cannot decode them (quantized tensors, float8 dtypes).
	// Warnings gives the reason for each. A tool that rewrites the file, such as
	// fuse, must not drop them silently.
	Unread []string
	// Metadata holds string metadata stored by convbn-diag's own writer
	// (per-layer ε, momentum, conv geometry, layer order) or safetensors'
	// __metadata__.
	Metadata map[string]string

	closer io.Closer // the file Open opened, nil for OpenReaderAt
}
