// Package reports renders analysis results for people and for programs.
//
// Four formats share one entry point, Write, and one Options struct:
//
//   - table (WriteTerminal): one row per layer in network order, in lines
//     of at most 120 characters, with long layer names shortened from the
//     left. A summary of the model follows, then the unpaired and
//     ambiguous convs and BatchNorms and pair discovery's notes. Legend returns the column
//     legend for help text; Options.Legend prints it under the tables.
//   - markdown (WriteMarkdown): the same Table as GitHub Markdown, with
//     the summary and the legend.
//   - json (WriteJSON): a Document with schema_version, the tool version,
//     the options and per file its format, globals, warnings and models
//     with layers, unpaired, ambiguous, notes and summary. Per-channel
//     arrays are added with Options.PerChannel. Numbers that are not
//     finite are written as null and the reason is in the flags of the
//     channel or layer. docs/json-schema.md documents every field.
//   - csv (WriteCSV): one row per layer (LayerCSVHeader), or one row per
//     channel with Options.PerChannel (ChannelCSVHeader). Numbers that are
//     not finite are written as inf, -inf or nan, with the reason in the
//     flags column; conv_bias is empty when the conv has no bias.
//
// Field and column names follow the symbols of the analysis: omega (ω),
// inv_std (s), distortion_sgd (1/ω²), distortion_adam (1/|ω|),
// weight_norm (‖W_c‖), fused_weight_norm (‖W'_c‖), fused_bias (b').
//
// Renderers write to an io.Writer and return its first error; writing to a
// file atomically is the caller's job. A typical call:
//
//	f, err := reports.ParseFormat(format)
//	...
//	err = reports.Write(os.Stdout, f, []*analysis.FileReport{report},
//		reports.Options{ToolVersion: version, PerChannel: perChannel})
package reports
