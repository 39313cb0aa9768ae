package checkpoint

import "testing"

func TestClassifyGlobal(t *testing.T) {
	cases := []struct {
		name string
		want GlobalKind
	}{
		{"collections.OrderedDict", GlobalTensorData},
		{"torch._utils._rebuild_tensor", GlobalTensorData},
		{"torch._utils._rebuild_tensor_v2", GlobalTensorData},
		{"torch._utils._rebuild_parameter", GlobalTensorData},
		{"torch._utils._rebuild_qtensor", GlobalTensorData},
		{"torch.FloatStorage", GlobalTensorData},
		{"torch.HalfStorage", GlobalTensorData},
		{"torch.cuda.FloatStorage", GlobalTensorData},
		{"torch.storage.UntypedStorage", GlobalTensorData},
		{"torch.Size", GlobalTensorData},
		{"torch.device", GlobalTensorData},
		{"torch.float16", GlobalTensorData},
		{"torch.nn.parameter.Parameter", GlobalTensorData},
		{"torch._tensor._rebuild_from_type_v2", GlobalTensorData},
		{"__builtin__.set", GlobalTensorData},
		{"_codecs.encode", GlobalTensorData},
		{"numpy.core.multiarray.scalar", GlobalLibrary},
		{"numpy.dtype", GlobalLibrary},
		{"argparse.Namespace", GlobalLibrary},
		{"pathlib.PosixPath", GlobalLibrary},
		{"collections.defaultdict", GlobalLibrary},
		{"torch.nn.modules.conv.Conv2d", GlobalModuleClass},
		{"torch.nn.modules.batchnorm.BatchNorm2d", GlobalModuleClass},
		{"models.yolo.Model", GlobalModuleClass},
		{"__main__.Net", GlobalModuleClass},
		{"os.system", GlobalDangerous},
		{"posix.system", GlobalDangerous},
		{"nt.system", GlobalDangerous},
		{"subprocess.Popen", GlobalDangerous},
		{"subprocess.check_output", GlobalDangerous},
		{"builtins.eval", GlobalDangerous},
		{"builtins.exec", GlobalDangerous},
		{"builtins.compile", GlobalDangerous},
		{"builtins.__import__", GlobalDangerous},
		{"builtins.getattr", GlobalDangerous},
		{"builtins.open", GlobalDangerous},
		{"__builtin__.eval", GlobalDangerous},
		{"runpy._run_code", GlobalDangerous},
		{"importlib.import_module", GlobalDangerous},
		{"shutil.rmtree", GlobalDangerous},
		{"socket.socket", GlobalDangerous},
		{"sys.modules", GlobalDangerous},
		{"pickle.loads", GlobalDangerous},
		{"operator.attrgetter", GlobalDangerous},
		{"torch.load", GlobalDangerous},
	}
	for _, c := range cases {
		if got := ClassifyGlobal(c.name); got != c.want {
			t.Errorf("ClassifyGlobal(%q) mismatch: got %v, want %v", c.name, got, c.want)
		}
	}
}
