package convbn

// DefaultEps is PyTorch's BatchNorm ε, used when neither the file nor the
// user gives one.
const DefaultEps = 1e-5

// DefaultMomentum is PyTorch's BatchNorm momentum, used when neither the
// file nor the user gives one.
const DefaultMomentum = 0.1

// Options are the user's settings for FindPairs. The zero value requests
// discovery from the file alone, with PyTorch's defaults where the file
// stores nothing.
type Options struct {
	// Eps is the BatchNorm ε to use where the file does not store one. It
	// applies only when EpsSet is true (the user gave --eps); a value the
	// file stores always wins.
	Eps    float64
	EpsSet bool

	// Momentum is the running-statistics momentum to use where the file
	// does not store one, nil for a cumulative average. It applies only
	// when MomentumSet is true (the user gave --momentum).
	Momentum    *float64
	MomentumSet bool

	// Pairs forces pairs, mapping a conv's module name to a BatchNorm's
	// (--pair CONV=BN). Both must exist, the BatchNorm must keep running
	// statistics and its size must match the conv's output channels.
	Pairs map[string]string

	// NoPair names convs or BatchNorms that must stay unpaired (--no-pair).
	NoPair []string
}
