// Package convbn finds the Conv→BatchNorm pairs of a checkpoint, which are
// the blocks whose BatchNorm can be folded into the convolution.
//
// A pair is a convolution whose output goes only into a BatchNorm that keeps
// running statistics. Evidence is weighed strongest first: the module tree
// of a pickled nn.Module, the layer list stored by convbn-diag's own writer,
// Sequential indices (a gap between a conv at i and a BatchNorm at i+2 means
// a parameter-free module such as ReLU sits between them), and finally
// names and registration order inside one parent together with matching
// channel counts. Every pair records its evidence, every unpaired conv or
// BatchNorm records why, and cases the evidence cannot settle are reported
// as ambiguous rather than guessed.
//
// The package also holds an instrumented ConvBN block (Block) that runs in
// the four modes: Train (batch statistics), Eval (frozen running
// statistics, BatchNorm kept apart), Deploy (BatchNorm folded into W' and
// b', which are trained directly) and Tune (folded again at every step from
// W, b, γ and β, whose gradients are kept). A Recorder attached to a block
// receives per step the norms of W, γ, W' and their gradients and the
// bytes each mode holds for backward. NewBlockFromPair builds a block from
// a discovered pair's tensors.
package convbn
