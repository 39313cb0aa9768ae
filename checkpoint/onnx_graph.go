package checkpoint

// Graph is the computation graph of an ONNX model. Model.Tensors holds its
// initializers under their ONNX names, and nodes refer to tensors and to
// each other's results by value name.
type Graph struct {
	Name string
	// Nodes are in the file's order, which ONNX requires to be a
	// topological order.
	Nodes []*Node
	// Inputs and Outputs name the graph's input and output values.
	Inputs, Outputs []string
	// Opsets maps each operator-set domain ("" for the default ai.onnx)
	// to the version the model imports.
	Opsets map[string]int64
}

// Node is one operator of a Graph.
type Node struct {
	// Name is the node's name, often empty in exported models.
	Name   string
	OpType string
	// Domain is the operator set, "" for the default ai.onnx domain.
	Domain string
	// Inputs and Outputs are value names. An omitted optional input or
	// output is "".
	Inputs, Outputs []string
	// Attrs holds the node's attributes: int64, float64 (the stored
	// float32 widened exactly), string, []int64, []float64, or *Tensor.
	// Attributes of other kinds (subgraphs, sparse tensors, type protos)
	// are left out.
	Attrs map[string]any
}

// Producers maps each value name to the index of the node that outputs
// it.
func (g *Graph) Producers() map[string]int {
	out := make(map[string]int)
	for i, n := range g.Nodes {
		for _, v := range n.Outputs {
			if v != "" {
				out[v] = i
			}
		}
	}
	return out
}

// Consumers maps each value name to the indices of the nodes that take it
// as an input, in node order and once per node.
func (g *Graph) Consumers() map[string][]int {
	out := make(map[string][]int)
	for i, n := range g.Nodes {
		for j, v := range n.Inputs {
			if v == "" || containsBefore(n.Inputs, j, v) {
				continue
			}
			out[v] = append(out[v], i)
		}
	}
	return out
}

// containsBefore reports whether v occurs in list before index j.
func containsBefore(list []string, j int, v string) bool {
	for _, s := range list[:j] {
		if s == v {
			return true
		}
	}
	return false
}
