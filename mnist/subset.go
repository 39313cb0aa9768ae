package mnist

import "fmt"

// Normalization used by every model in this module: the MNIST training
// set's mean and standard deviation of pixel/255.
const (
	Mean = 0.1307
	Std  = 0.3081
)

// Subset returns the first n images (all when n ≤ 0) of s whose label is in
// digits, relabelled as the label's index in digits, so digits 5–9 become
// classes 0–4. It fails when fewer than n images match.
func (s *Set) Subset(digits []int, n int) (*Set, error) {
	class := map[uint8]uint8{}
	for i, d := range digits {
		if d < 0 || d > 9 {
			return nil, fmt.Errorf("mnist: %d is not a digit", d)
		}
		class[uint8(d)] = uint8(i)
	}
	out := &Set{}
	for i, l := range s.Labels {
		if n > 0 && out.Len() == n {
			break
		}
		c, ok := class[l]
		if !ok {
			continue
		}
		out.Labels = append(out.Labels, c)
		out.Pixels = append(out.Pixels, s.Pixels[i*Side*Side:(i+1)*Side*Side]...)
	}
	if n > 0 && out.Len() < n {
		return nil, fmt.Errorf("mnist: only %d images of digits %v, %d requested", out.Len(), digits, n)
	}
	return out, nil
}

// Batch writes the normalized images with the given indices into dst, an
// N×1×28×28 buffer in NCHW order (len(idx)·784 values), and returns their
// labels.
func Batch[T ~float32 | ~float64](s *Set, idx []int, dst []T) []int {
	labels := make([]int, len(idx))
	const size = Side * Side
	for j, i := range idx {
		labels[j] = int(s.Labels[i])
		for k, p := range s.Pixels[i*size : (i+1)*size] {
			dst[j*size+k] = T((float64(p)/255 - Mean) / Std)
		}
	}
	return labels
}
