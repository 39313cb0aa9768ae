package checkpoint

import "strings"

// GlobalKind classifies a global (a class or function) that a pickle names.
type GlobalKind int

// Kinds of globals, from harmless to dangerous.
const (
	// GlobalTensorData is what a tensor checkpoint needs. It covers the
	// globals that torch 1.13's torch.load(weights_only=True) accepts
	// (collections.OrderedDict, torch.nn.parameter.Parameter, torch.Size,
	// torch.Tensor, dtypes, tensor and storage classes, the
	// torch._utils._rebuild_* functions), plus globals that hold no code:
	// torch.device, quantization schemes, layouts, set, frozenset,
	// bytearray and _codecs.encode.
	GlobalTensorData GlobalKind = iota
	// GlobalLibrary is a data class or function from a known library that
	// is neither tensor data nor a model class, such as numpy scalars and
	// arrays, argparse.Namespace, pathlib paths or collections.defaultdict.
	GlobalLibrary
	// GlobalModuleClass is a model class: torch.nn.* modules and any
	// third-party class (models.yolo.Model), whose source code torch.load
	// would need to import.
	GlobalModuleClass
	// GlobalDangerous is a global that can run commands, load code or
	// touch files when a pickle calls it: os.system, subprocess.Popen,
	// builtins.eval, exec, getattr, open, __import__, and the like.
	GlobalDangerous
)

// String returns "tensor-data", "library", "module-class" or "dangerous".
func (k GlobalKind) String() string {
	switch k {
	case GlobalTensorData:
		return "tensor-data"
	case GlobalLibrary:
		return "library"
	case GlobalModuleClass:
		return "module-class"
	case GlobalDangerous:
		return "dangerous"
	}
	return "unknown"
}

// tensorDataGlobals lists the exact names weights-only loading needs
// besides the storage classes, dtypes and torch._utils._rebuild_*.
var tensorDataGlobals = map[string]bool{
	"collections.OrderedDict":                true,
	"torch.Size":                             true,
	"torch.device":                           true,
	"torch.Tensor":                           true,
	"torch.nn.parameter.Parameter":           true,
	"torch._tensor._rebuild_from_type_v2":    true,
	"torch._tensor._rebuild_from_type":       true,
	"torch.serialization._get_layout":        true,
	"torch.storage._load_from_bytes":         true,
	"builtins.set":                           true,
	"builtins.frozenset":                     true,
	"builtins.bytearray":                     true,
	"__builtin__.set":                        true,
	"__builtin__.frozenset":                  true,
	"__builtin__.bytearray":                  true,
	"_codecs.encode":                         true,
	"torch.per_tensor_affine":                true,
	"torch.per_channel_affine":               true,
	"torch.per_tensor_symmetric":             true,
	"torch.per_channel_symmetric":            true,
	"torch.per_channel_affine_float_qparams": true,
	"torch.strided":                          true,
	"torch.sparse_coo":                       true,
	"torch.sparse_csr":                       true,
}

// torchDTypeNames are the torch.<dtype> globals a pickle may name.
var torchDTypeNames = map[string]bool{
	"float32": true, "float": true, "float64": true, "double": true,
	"float16": true, "half": true, "bfloat16": true,
	"int64": true, "long": true, "int32": true, "int": true,
	"int16": true, "short": true, "int8": true, "uint8": true, "bool": true,
	"complex32": true, "chalf": true, "complex64": true, "cfloat": true,
	"complex128": true, "cdouble": true,
	"qint8": true, "quint8": true, "qint32": true, "quint4x2": true,
}

// dangerousModules are modules whose every global is treated as dangerous.
var dangerousModules = []string{
	"os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "runpy",
	"importlib", "imp", "shutil", "socket", "pickle", "_pickle", "cPickle",
	"marshal", "ctypes", "code", "codeop", "pty", "commands", "webbrowser",
	"multiprocessing", "asyncio", "signal", "tempfile", "io", "_io",
	"urllib", "urllib2", "http", "httplib", "ftplib", "smtplib", "telnetlib",
	"requests", "types", "inspect", "pdb", "bdb", "timeit", "platform",
	"glob", "zipimport", "pkgutil", "distutils", "setuptools", "cProfile",
	"profile", "trace", "threading", "_thread", "thread",
}

// dangerousBuiltins are builtins that evaluate code, reach arbitrary
// attributes or open files.
var dangerousBuiltins = map[string]bool{
	"eval": true, "exec": true, "execfile": true, "compile": true,
	"__import__": true, "getattr": true, "setattr": true, "delattr": true,
	"open": true, "file": true, "input": true, "raw_input": true,
	"breakpoint": true, "globals": true, "locals": true, "vars": true,
	"apply": true, "reload": true, "memoryview": true, "exit": true, "quit": true,
	"help": true, "__loader__": true, "__build_class__": true,
}

// dangerousNames are individual globals outside the modules above that
// pickle exploits use.
var dangerousNames = map[string]bool{
	"operator.attrgetter":   true,
	"operator.methodcaller": true,
	"operator.itemgetter":   true,
	"functools.partial":     true,
	"functools.reduce":      true,
	"codecs.open":           true,
	"torch.load":            true,
	"torch.hub.load":        true,
	"torch.jit.load":        true,
	"numpy.load":            true,
	"numpy.fromfile":        true,
	"numpy.loadtxt":         true,
}

// libraryModules are modules whose globals are inert data classes.
var libraryModules = []string{
	"numpy", "argparse", "pathlib", "datetime", "decimal", "fractions",
	"collections", "copyreg", "copy_reg", "enum", "uuid", "re", "_codecs",
	"__builtin__", "builtins", "omegaconf", "typing", "dataclasses",
}

// ClassifyGlobal returns the kind of the global "module.name" that a pickle
// references.
func ClassifyGlobal(name string) GlobalKind {
	module, short := name, ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		module, short = name[:i], name[i+1:]
	}
	root := module
	if i := strings.IndexByte(module, '.'); i >= 0 {
		root = module[:i]
	}

	switch {
	case dangerousNames[name]:
		return GlobalDangerous
	case (module == "builtins" || module == "__builtin__") && dangerousBuiltins[short]:
		return GlobalDangerous
	case tensorDataGlobals[name]:
		return GlobalTensorData
	case module == "torch._utils" && strings.HasPrefix(short, "_rebuild_"):
		return GlobalTensorData
	case (module == "torch" || module == "torch.cuda" || module == "torch.storage") && strings.HasSuffix(short, "Storage"):
		return GlobalTensorData
	case (module == "torch" || module == "torch.cuda") && strings.HasSuffix(short, "Tensor"):
		return GlobalTensorData
	case module == "torch" && torchDTypeNames[short]:
		return GlobalTensorData
	}
	for _, m := range dangerousModules {
		if root == m {
			return GlobalDangerous
		}
	}
	for _, m := range libraryModules {
		if root == m {
			return GlobalLibrary
		}
	}
	return GlobalModuleClass
}
