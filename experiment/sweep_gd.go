package experiment

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// GDConfig sets the sweep under the assumptions of the stability analysis.
// It runs full-batch gradient descent in float64 on a fixed set of source
// images from the pretrained point. Only the conv weights train (W in Eval
// mode, W' in Deploy mode), and γ, β and the head stay frozen.
type GDConfig struct {
	Grid  Grid
	Steps int
	// PowerIterations is the number of Hessian-vector products per
	// λ_max estimate.
	PowerIterations int
	Seed            uint64
}

// GDSweep is the measured and predicted η*_Deploy/η*_Eval of the full-batch
// setting.
type GDSweep struct {
	Images int          `json:"images"`
	Modes  []*ModeSweep `json:"modes"`
	// LambdaEval is λ_max(D H' D), the top Hessian eigenvalue in Eval
	// coordinates W; LambdaDeploy is λ_max(H') in fused coordinates.
	LambdaEval   Float `json:"lambda_max_eval"`
	LambdaDeploy Float `json:"lambda_max_deploy"`
	// Predicted rates 2/λ_max per mode.
	PredictedEval   Float `json:"predicted_max_lr_eval"`
	PredictedDeploy Float `json:"predicted_max_lr_deploy"`
	// MeasuredRatio is η*_Deploy/η*_Eval on the grid; HessianRatio is
	// λ_max(D H' D)/λ_max(H'); BoundLow and BoundHigh are min and max ω².
	MeasuredRatio Float `json:"measured_ratio"`
	HessianRatio  Float `json:"hessian_ratio"`
	BoundLow      Float `json:"bound_min_omega_sq"`
	BoundHigh     Float `json:"bound_max_omega_sq"`
	// HessianFactor is max(m/p, p/m) for measured m and predicted p.
	HessianFactor Float `json:"hessian_factor"`
	WithinBound   bool  `json:"measured_within_bound"`
	// PowerResidual is the relative change of each λ estimate over the
	// last power iteration, a check on convergence.
	PowerResidualEval   Float `json:"power_residual_eval"`
	PowerResidualDeploy Float `json:"power_residual_deploy"`
}

// Validate reports an invalid setting.
func (c *GDConfig) Validate() error {
	if err := c.Grid.Validate(); err != nil {
		return err
	}
	if c.Steps < 2 || c.PowerIterations < 2 {
		return fmt.Errorf("steps %d and power iterations %d: need at least 2 of each", c.Steps, c.PowerIterations)
	}
	return nil
}

// fullBatch is a float64 network in one mode, with its images and which
// parameters gradient descent moves.
type fullBatch struct {
	net    *convbn.Net[float64]
	x      *nn.Tensor[float64]
	labels []int
	params []*nn.Param[float64] // the blocks' conv weights
}

func newFullBatch(w *Weights, s *mnist.Set, mode convbn.Mode) (*fullBatch, error) {
	net, err := Build[float64](w, false, 0, 0)
	if err != nil {
		return nil, err
	}
	if err := net.SetMode(mode); err != nil {
		return nil, err
	}
	fb := &fullBatch{net: net}
	fb.x, fb.labels = batchTensor[float64](s, span(s.Len()))
	for _, b := range net.Blocks() {
		fb.params = append(fb.params, b.Params()[0])
	}
	return fb, nil
}

// gradient returns the loss and the gradient of the trained weights,
// concatenated.
func (fb *fullBatch) gradient() (float64, []float64, error) {
	fb.net.ZeroGrad()
	loss, g, err := fb.net.Loss(fb.x, fb.labels)
	if err != nil {
		return 0, nil, err
	}
	if _, err := fb.net.Backward(g); err != nil {
		return 0, nil, err
	}
	var out []float64
	for _, p := range fb.params {
		out = append(out, p.Grad...)
	}
	return loss, out, nil
}

func (fb *fullBatch) weights() []float64 {
	var out []float64
	for _, p := range fb.params {
		out = append(out, p.Value...)
	}
	return out
}

func (fb *fullBatch) setWeights(v []float64) {
	for _, p := range fb.params {
		n := copy(p.Value, v)
		v = v[n:]
	}
}

// descend runs gradient descent at rate lr and judges it.
func (fb *fullBatch) descend(lr float64, steps int) (Trial, error) {
	start := fb.weights()
	defer fb.setWeights(start)
	var losses []float64
	for range steps {
		loss, g, err := fb.gradient()
		if err != nil {
			return Trial{}, err
		}
		losses = append(losses, loss)
		if diverging(loss, losses[0]) {
			break
		}
		w := fb.weights()
		for i := range w {
			w[i] -= lr * g[i]
		}
		fb.setWeights(w)
	}
	return judge(lr, losses, 1), nil
}

// lambdaMax estimates the largest-magnitude Hessian eigenvalue of the
// trained weights by power iteration, with Hessian-vector products from
// central differences of gradients: Hv ≈ (g(w + hv) − g(w − hv))/(2h)
// for unit v and h = 1e-4·max(1, ‖w‖/√n). It returns the estimate and its
// relative change over the last iteration.
//
// NOTE: steps of size h cross ReLU and max-pool kinks, so the estimate is
// the curvature smoothed over that scale. It exceeded PyTorch's exact
// double-backward λ_max by about 1% in Eval and 6% in fused coordinates
// on 64 MNIST images. A much smaller h makes single kink crossings
// dominate and the estimate erratic.
func (fb *fullBatch) lambdaMax(iterations int, seed uint64) (lambda, residual float64, err error) {
	w0 := fb.weights()
	defer fb.setWeights(w0)
	n := len(w0)
	h := 1e-4 * math.Max(1, nn.Norm(w0)/math.Sqrt(float64(n)))
	rng := newRandStream(seed, streamPower)
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	scale(v, 1/nn.Norm(v))

	prev := math.NaN()
	probe := make([]float64, n)
	for range iterations {
		for i := range probe {
			probe[i] = w0[i] + h*v[i]
		}
		fb.setWeights(probe)
		_, gPlus, err := fb.gradient()
		if err != nil {
			return 0, 0, err
		}
		for i := range probe {
			probe[i] = w0[i] - h*v[i]
		}
		fb.setWeights(probe)
		_, gMinus, err := fb.gradient()
		if err != nil {
			return 0, 0, err
		}

		hv := gPlus
		for i := range hv {
			hv[i] = (gPlus[i] - gMinus[i]) / (2 * h)
		}
		var rayleigh float64
		for i := range hv {
			rayleigh += hv[i] * v[i]
		}
		residual = math.Abs(rayleigh-prev) / math.Abs(rayleigh)

		prev = rayleigh
		norm := nn.Norm(hv)
		if norm == 0 {
			return 0, 0, fmt.Errorf("power iteration: the Hessian-vector product is zero")
		}
		copy(v, hv)
		scale(v, 1/norm)
	}
	return prev, residual, nil
}

func scale(v []float64, a float64) {
	for i := range v {
		v[i] *= a
	}
}

// SweepGD measures η*_Eval and η*_Deploy by full-batch gradient descent on
// the images of s and predicts their ratio from the Hessian and from ω.
// Tune mode is not swept here: with γ frozen it computes the same function
// and gradients as Eval.
func SweepGD(cfg GDConfig, w *Weights, s *mnist.Set) (*GDSweep, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	out := &GDSweep{Images: s.Len()}
	lambdas := map[convbn.Mode]*Float{convbn.Eval: &out.LambdaEval, convbn.Deploy: &out.LambdaDeploy}
	residuals := map[convbn.Mode]*Float{convbn.Eval: &out.PowerResidualEval, convbn.Deploy: &out.PowerResidualDeploy}
	rates := map[convbn.Mode]float64{}
	for _, mode := range []convbn.Mode{convbn.Eval, convbn.Deploy} {
		fb, err := newFullBatch(w, s, mode)
		if err != nil {
			return nil, err
		}
		ms, err := cfg.Grid.descend(mode.String(), func(lr float64) (Trial, error) { return fb.descend(lr, cfg.Steps) })
		if err != nil {
			return nil, err
		}
		out.Modes = append(out.Modes, ms)
		rates[mode] = float64(ms.MaxRate)
		lambda, residual, err := fb.lambdaMax(cfg.PowerIterations, cfg.Seed)
		if err != nil {
			return nil, fmt.Errorf("%s mode: %w", mode, err)
		}
		*lambdas[mode], *residuals[mode] = Float(lambda), Float(residual)
	}

	out.PredictedEval = Float(2 / float64(out.LambdaEval))
	out.PredictedDeploy = Float(2 / float64(out.LambdaDeploy))
	out.MeasuredRatio = Float(rates[convbn.Deploy] / rates[convbn.Eval])
	out.HessianRatio = out.LambdaEval / out.LambdaDeploy
	m, p := float64(out.MeasuredRatio), float64(out.HessianRatio)
	out.HessianFactor = Float(math.Max(m/p, p/m))
	lo, hi := math.Inf(1), 0.0
	for i := range w.Blocks {
		for _, o := range w.Blocks[i].Omega() {
			lo, hi = math.Min(lo, o*o), math.Max(hi, o*o)
		}
	}
	out.BoundLow, out.BoundHigh = Float(lo), Float(hi)
	out.WithinBound = m >= lo && m <= hi
	return out, nil
}
