package mnist

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Side is the width and height of an MNIST image in pixels.
const Side = 28

// IDX magic numbers: unsigned bytes, three dimensions for images, one for
// labels.
const (
	imageMagic = 0x00000803
	labelMagic = 0x00000801
)

// maxImages bounds the count an IDX header may claim, so that a corrupt
// header cannot make Load allocate gigabytes. MNIST has 60 000.
const maxImages = 1 << 20

// Set is a set of images with their labels. Pixels holds Len()·28·28 grey
// levels (0 = background, 255 = ink), image after image, row-major.
type Set struct {
	Pixels []uint8
	Labels []uint8
}

// Len returns the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Load reads the training set (split "train") or the test set ("test")
// from dir, as returned by Locate.
func Load(dir, split string) (*Set, error) {
	var imgName, lblName string
	switch split {
	case "train":
		imgName, lblName = TrainImagesFile, TrainLabelsFile
	case "test":
		imgName, lblName = TestImagesFile, TestLabelsFile
	default:
		return nil, fmt.Errorf("mnist: unknown split %q: use train or test", split)
	}
	labels, err := readIDX(filepath.Join(dir, lblName), labelMagic)
	if err != nil {
		return nil, err
	}
	pixels, err := readIDX(filepath.Join(dir, imgName), imageMagic)
	if err != nil {
		return nil, err
	}
	if len(pixels) != len(labels)*Side*Side {
		return nil, fmt.Errorf("mnist: %s holds %d pixels, but %s has %d labels (want %d pixels): the two files do not belong together", imgName, len(pixels), lblName, len(labels), len(labels)*Side*Side)
	}
	for i, l := range labels {
		if l > 9 {
			return nil, fmt.Errorf("mnist: %s: label %d of image %d is not a digit", lblName, l, i)
		}
	}
	return &Set{Pixels: pixels, Labels: labels}, nil
}

// readIDX reads a gzipped IDX file of unsigned bytes and returns its data.
// Image files must be N×28×28.
func readIDX(path string, magic uint32) ([]uint8, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mnist: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("mnist: %s is not a gzip file: %w (replace it with the original from %s)", path, err, ModulePath)
	}
	var got uint32
	if err := binary.Read(zr, binary.BigEndian, &got); err != nil {
		return nil, fmt.Errorf("mnist: %s: reading the IDX header at offset 0: %w", path, err)
	}
	if got != magic {
		return nil, fmt.Errorf("mnist: %s: IDX magic number %#08x at offset 0, want %#08x", path, got, magic)
	}
	dims := 1
	if magic == imageMagic {
		dims = 3
	}
	shape := make([]uint32, dims)
	if err := binary.Read(zr, binary.BigEndian, shape); err != nil {
		return nil, fmt.Errorf("mnist: %s: reading the IDX dimensions at offset 4: %w", path, err)
	}
	if shape[0] > maxImages {
		return nil, fmt.Errorf("mnist: %s: header claims %d items, more than the %d allowed", path, shape[0], maxImages)
	}
	n := int(shape[0])
	if dims == 3 {
		if shape[1] != Side || shape[2] != Side {
			return nil, fmt.Errorf("mnist: %s: images are %d×%d, want %d×%d", path, shape[1], shape[2], Side, Side)
		}
		n *= Side * Side
	}
	data := make([]uint8, n)
	if _, err := io.ReadFull(zr, data); err != nil {
		return nil, fmt.Errorf("mnist: %s: header promises %d bytes of data after offset %d: %w", path, n, 4+4*dims, err)
	}
	return data, nil
}
