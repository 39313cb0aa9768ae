package nn

// Param is one trainable tensor with its gradient, both flat. Optimizers
// update Value from Grad.
type Param[T Float] struct {
	Name  string
	Value []T
	Grad  []T
	// Decay marks the parameter for weight decay; BatchNorm γ and β and
	// biases are usually left out.
	Decay bool
}

// Layer is one stage of a sequential network. Forward keeps what Backward
// needs; Backward adds the parameter gradients and returns the gradient of
// the input.
type Layer[T Float] interface {
	Forward(x *Tensor[T]) (*Tensor[T], error)
	Backward(dy *Tensor[T]) (*Tensor[T], error)
	Params() []*Param[T]
}
