// Package experiment runs the MNIST experiments behind convbn-diag's
// pretrain, simulate and sweep commands. It pretrains a small CNN of
// ConvBN blocks on digits 0–4 and fine-tunes it on digits 5–9 in each
// block mode (Train, Eval, Tune, Deploy) with identical optimizer, seed
// and batch order. It also measures the largest stable learning rate of
// each mode next to the predictions of the stability analysis:
//
//	η*_Deploy / η*_Eval = λ_max(D H' D) / λ_max(H')   (full-batch GD, conv weights only)
//	min_c ω_c² ≤ η*_Deploy / η*_Eval ≤ max_c ω_c²
//
// where H' is the loss Hessian in fused coordinates W' = ω·W and D holds
// ω_c for every weight of output channel c.
package experiment
