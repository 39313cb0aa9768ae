package experiment

import (
	"math"
	"strconv"
)

// Float is a float64 that encodes NaN and ±Inf as JSON null, since JSON
// has no such numbers; CSV writes them as nan, inf and -inf.
type Float float64

// MarshalJSON writes the shortest exact decimal, or null when not finite.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// String formats f for CSV.
func (f Float) String() string {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
