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
package convbn
