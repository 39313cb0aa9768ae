package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// fuseTorchNet builds the same network in the two scripts below. With
// fused=True each foldable BatchNorm is an Identity and its conv has a
// bias; the BatchNorm behind a ReLU (index 13) cannot be folded and stays.
const fuseTorchNet = `
import sys, torch, torch.nn as nn
def net(fused):
    bn = (lambda c: nn.Identity()) if fused else nn.BatchNorm2d
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=fused), bn(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), bn(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=fused), bn(8),
        nn.ConvTranspose2d(8, 6, 2, stride=2, bias=fused), bn(6), nn.ReLU(),
        nn.Conv2d(6, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))
`

// TestFuseTorchEquivalence saves a network with torch, fuses it, and
// checks with torch that the fused state dict loads with weights_only=True
// into the network built with Identity for each folded BatchNorm and
// computes what the unfused network computes in eval mode. It covers a
// conv without bias, a grouped conv with bias, a depthwise conv, a
// transposed conv with different input and output channels, a dead
// channel (γ = 0), a DataParallel prefix, and --key on a file with two
// models.
func TestFuseTorchEquivalence(t *testing.T) {
	requireTorch(t)
	tmp := t.TempDir()
	runPython(t, fuseTorchNet+`
torch.manual_seed(0)
m = net(False)
for mod in m.modules():
    if isinstance(mod, nn.BatchNorm2d):
        c = mod.num_features
        mod.weight.data = torch.empty(c).uniform_(0.3, 3) * torch.randn(c).sign()
        mod.weight.data[0] = 0
        mod.bias.data = torch.randn(c)
        mod.running_mean = torch.randn(c)
        mod.running_var = torch.empty(c).uniform_(0.05, 4)
        mod.num_batches_tracked.fill_(7)
sd = m.state_dict()
d = sys.argv[1]
torch.save(sd, d + '/plain.pt')
torch.save({'module.' + k: v for k, v in sd.items()}, d + '/dp.pt')
torch.save({'epoch': 1, 'model': sd, 'ema': {k: v.clone() for k, v in sd.items()}}, d + '/two.pt')
`, tmp)

	fuse := func(args ...string) {
		t.Helper()
		code, _, stderr := runCLI(t, append([]string{"fuse"}, args...)...)
		if code != exitOK {
			t.Fatalf("fuse %v: exit %d, stderr %q", args, code, stderr)
		}
	}
	fuse(filepath.Join(tmp, "plain.pt"), "-o", filepath.Join(tmp, "plain-fused.pt"))
	fuse(filepath.Join(tmp, "dp.pt"), "-o", filepath.Join(tmp, "dp-fused.pt"))
	fuse("--key", "ema", filepath.Join(tmp, "two.pt"), "-o", filepath.Join(tmp, "ema-fused.pt"))

	code, _, stderr := runCLI(t, "fuse", filepath.Join(tmp, "two.pt"), "-o", filepath.Join(tmp, "x.pt"))
	if code != exitFailure || !strings.Contains(stderr, "--key") {
		t.Errorf("two models without --key: exit %d, stderr %q; want %d and a hint to use --key", code, stderr, exitFailure)
	}

	runPython(t, fuseTorchNet+`
d = sys.argv[1]
torch.manual_seed(1)
ref = net(False)
ref.load_state_dict(torch.load(d + '/plain.pt', weights_only=True))
ref.eval()
x = torch.randn(4, 3, 9, 9)
with torch.no_grad():
    want = ref(x)
for name, prefix in [('plain', ''), ('dp', 'module.'), ('ema', '')]:
    sd = torch.load(d + '/' + name + '-fused.pt', weights_only=True)
    assert all(k.startswith(prefix) for k in sd), (name, list(sd))
    assert not any('running_var' in k and not k.startswith(prefix + '13.') for k in sd), (name, list(sd))
    fused = net(True)
    fused.load_state_dict({k[len(prefix):]: v for k, v in sd.items()}, strict=True)
    fused.eval()
    with torch.no_grad():
        got = fused(x)
    err = ((got - want).abs().max() / want.abs().max().clamp(min=1)).item()
    assert err <= 1e-5, (name, err)
`, tmp)
}
