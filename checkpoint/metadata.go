package checkpoint

// MetadataLayersKey is the Metadata key under which convbn-diag's own writer
// stores the network's layers in forward order, as a JSON array of
// LayerSpec. Pair discovery treats that list as the strongest evidence after
// a pickled module tree: a conv directly followed by a BatchNorm is a pair,
// and anything listed between them (a ReLU, say) breaks it.
const MetadataLayersKey = "convbn_diag.layers"

// MetadataFormatKey names the metadata format version; MetadataFormat is
// the current one.
const (
	MetadataFormatKey = "convbn_diag.format"
	MetadataFormat    = "1"
)

// MetadataObjectKey is the key of the top-level dict entry that holds the
// metadata (a dict of str to str) in a PyTorch checkpoint written by
// convbn-diag. The weights sit beside it under "state_dict".
const MetadataObjectKey = "convbn_diag_metadata"

// LayerSpec describes one layer of a network in forward order. Fields that
// do not apply to the layer's Type are omitted.
type LayerSpec struct {
	// Name is the module path that prefixes the layer's tensors
	// ("features.0"), or a descriptive name for a parameter-free layer.
	Name string `json:"name"`
	// Type is the PyTorch class name without its package: "Conv2d",
	// "ConvTranspose2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear", ...
	Type string `json:"type"`

	// Convolution geometry, one entry per spatial dimension.
	Stride   []int `json:"stride,omitempty"`
	Padding  []int `json:"padding,omitempty"`
	Dilation []int `json:"dilation,omitempty"`
	Groups   int   `json:"groups,omitempty"`

	// BatchNorm settings. A nil Momentum means a cumulative moving average.
	Eps               float64  `json:"eps,omitempty"`
	Momentum          *float64 `json:"momentum,omitempty"`
	Affine            *bool    `json:"affine,omitempty"`
	TrackRunningStats *bool    `json:"track_running_stats,omitempty"`
}
