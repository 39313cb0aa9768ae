// Package gradients holds the gradient relations between a ConvBN block's
// fused parametrization (W', b') and its unfused one (W, b, γ, β), the
// per-channel step-ratio measurement that compares one optimizer step in
// both, and a central-difference gradient checker.
//
// With ω_c = γ_c·s_c, s_c = 1/√(σ²_c + ε), G' = ∂L/∂W' and g = ∂L/∂b':
//
//	∂L/∂W_c = ω_c·G'_c
//	∂L/∂b_c = ω_c·g_c
//	∂L/∂β_c = g_c
//	∂L/∂γ_c = s_c·(⟨W_c, G'_c⟩ + (b_c − μ_c)·g_c)
package gradients
